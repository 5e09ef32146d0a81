"""Exact belief propagation on random-hierarchy trees (THEORY C, "Exact denoising").

Contract: given the rules of a :class:`~diffphase.data.rhm.RandomHierarchyModel` and leaf
likelihoods ``nu`` of shape ``(batch, s**L, v)``:

* :func:`upward_messages` returns ``up[l]`` of shape ``(batch, s**l, n_par(l))`` for ``l = 0..L``
  (``up[L]`` is the normalized leaf likelihood):
  ``up(a) ∝ sum_j prod_k up_{child k}(R[a, j, k])``;
* :func:`downward_messages` returns ``down[l]`` (root: the uniform prior):
  ``down_{child k}(b) ∝ sum_a down(a) sum_{j: R[a,j,k]=b} prod_{k' != k} up_{child k'}(R[a,j,k'])``;
* :func:`belief_propagation` returns both and the marginals ``∝ up * down`` at every node;
* :func:`sample_posterior` draws whole trees exactly from ``p(tree | leaves)``: the root from
  ``up[0]`` (uniform prior), then for a node of value ``a`` the rule ``j`` with probability
  ``∝ prod_k up_{child k}(R[a, j, k])``.

Every message is normalized to sum to one. A message that sums to zero (or is not finite) is
replaced by the uniform distribution and counted in ``n_guarded``; it can only happen when leaf
likelihoods underflow or are inconsistent with every rule.

The compiled loops are cached by numba (``cache=True``); damaged cache files are discarded at
import (:func:`~diffphase.solvers.codegen.repair_package_numba_caches`) and rebuilt.

Two engines compute the same equations: ``numba`` (compiled loops, parallel over the batch; CPU)
and ``array`` (vectorized gathers and one-hot products written against the array module of
:func:`diffphase.backend.get_array_module`, so it runs on numpy or on cupy when a GPU answers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import get_num_threads, get_thread_id, njit, prange

from ..backend import get_array_module, to_numpy
from ..errors import ParameterError, require_choice
from ..models import BP_ENGINES
from .codegen import repair_package_numba_caches

ENGINES = BP_ENGINES
#: largest number of floats one chunk of the array engine may allocate
ARRAY_CHUNK_FLOATS = 2**23
#: memory budget (bytes) of one batch of forward-backward work; larger batches are chunked
MAX_BP_BYTES = 2**30

repair_package_numba_caches()  # before the first call loads any cached machine code


def bp_bytes_per_tree(v: int, n_c: int, s: int, L: int) -> int:
    """Bytes one tree needs in a forward-backward experiment.

    Float64: the leaf likelihood and its normalized copy (``2 s^L v``), and the upward, downward,
    marginal and product arrays at every level (``4 sum_l s^l n_par(l)``); int64: the true and the
    sampled tree (``2 sum_l s^l``).
    """
    nodes = sum(s**lv for lv in range(L + 1))
    node_values = sum(s**lv * (n_c if lv == 0 else v) for lv in range(L + 1))
    return 8 * (2 * s**L * v + 4 * node_values + 2 * nodes)


def bp_batch_size(v: int, n_c: int, s: int, L: int, requested: int,
                  budget: int = MAX_BP_BYTES) -> int:
    """Largest batch ``<= requested`` within ``budget`` bytes; error when one tree exceeds it.

    Raises
    ------
    ParameterError
        naming ``L`` when a single tree needs more than ``budget`` (a tree too large for
        memory), before anything is allocated.
    """
    per_tree = bp_bytes_per_tree(v, n_c, s, L)
    if per_tree > budget:
        raise ParameterError("L", L, f"a tree whose belief propagation fits in {budget / 2**30:g} "
                             f"GiB (one tree with s={s}, v={v} needs {per_tree / 2**30:.3g} GiB:"
                             " too large for memory)")
    return max(1, min(int(requested), budget // per_tree))


@dataclass
class BPResult:
    """Messages and marginals at every level (level 0 the root, ``L`` the leaves)."""

    up: list[np.ndarray]
    down: list[np.ndarray]
    marginals: list[np.ndarray]
    n_guarded: int


def check_likelihood(rules: list[np.ndarray], nu: np.ndarray, values: bool = True) -> np.ndarray:
    """Check shapes: ``nu`` is ``(batch, s**L, v)``, finite and non-negative (the values are
    left to the caller when ``values`` is False: :func:`normalized_leaves` checks them in its
    one pass).

    The leaf alphabet ``v`` is the parent count of the last level when ``L >= 2``; at depth 1
    the only level is the root's (``n_c`` parents), so ``v`` is read from ``nu`` and must
    cover every leaf value the rules produce.
    """
    s = rules[-1].shape[2]
    if len(rules) >= 2:
        v = rules[-1].shape[0]
    else:
        v = nu.shape[2] if nu.ndim == 3 else 0
        v = max(v, int(rules[-1].max()) + 1)
    n_leaves = s ** len(rules)
    if nu.ndim != 3 or nu.shape[1] != n_leaves or nu.shape[2] != v:
        raise ParameterError("leaf_likelihood", f"shape {nu.shape}",
                             f"shape (batch, {n_leaves}, {v})")
    if values and (not np.all(np.isfinite(nu)) or np.any(nu < 0)):
        _refuse_leaf_values()
    return np.ascontiguousarray(nu, dtype=np.float64)


def _refuse_leaf_values():
    raise ParameterError("leaf_likelihood", "non-finite or negative entries",
                         "finite, non-negative")


# ----------------------------------------------------------------------------- numba engine
@njit(cache=True)
def _normalize(vec):
    total = 0.0
    for a in range(vec.shape[0]):
        total += vec[a]
    if total > 0.0 and np.isfinite(total):
        for a in range(vec.shape[0]):
            vec[a] /= total
        return 0
    for a in range(vec.shape[0]):
        vec[a] = 1.0 / vec.shape[0]
    return 1


#: nodes per block of the upward pass (their child messages, transposed, stay in L1 cache)
UP_BLOCK = 64


@njit(cache=True)
def _upward_scratch(child, rules, out, copies):
    """Scratch arrays of :func:`_upward_one`, ``copies`` of each (one per thread): the
    transposed block of child messages, the sums and the products."""
    block = min(UP_BLOCK, out.shape[1])
    return (np.empty((copies, rules.shape[2], child.shape[2], block)),
            np.empty((copies, block)), np.empty((copies, block)))


@njit(cache=True)
def _upward_one(child, rules, out, bi, local, acc, prod):
    """One tree's level: ``out[bi, i, a] = sum_j prod_k child[bi, s*i + k, R[a, j, k]]``,
    normalized. Nodes go in blocks whose child messages are copied transposed
    (``local[k, value, node]``), so that for each ``(a, j)`` the products run over contiguous
    nodes (vectorized loads and multiplies instead of one gather per product); the sums run over
    ``j`` in the same order as the plain loop, so the result is the same to the last bit.
    ``local``, ``acc``, ``prod``: scratch (:func:`_upward_scratch`), allocated once per call of
    a driver, not per tree."""
    nodes, n_par = out.shape[1], out.shape[2]
    m, s = rules.shape[1], rules.shape[2]
    v = child.shape[2]
    block = local.shape[2]
    guarded = 0
    for start in range(0, nodes, block):
        width = min(block, nodes - start)
        for ii in range(width):
            for k in range(s):
                for b in range(v):
                    local[k, b, ii] = child[bi, s * (start + ii) + k, b]
        for a in range(n_par):
            acc[:width] = 0.0
            for j in range(m):
                if s == 2:
                    first, second = local[0, rules[a, j, 0]], local[1, rules[a, j, 1]]
                    for ii in range(width):
                        acc[ii] += first[ii] * second[ii]
                else:
                    prod[:width] = local[0, rules[a, j, 0]][:width]
                    for k in range(1, s):
                        row = local[k, rules[a, j, k]]
                        for ii in range(width):
                            prod[ii] *= row[ii]
                    for ii in range(width):
                        acc[ii] += prod[ii]
            for ii in range(width):
                out[bi, start + ii, a] = acc[ii]
        for ii in range(width):
            guarded += _normalize(out[bi, start + ii])
    return guarded


@njit(cache=True)
def _downward_one(down, child_up, rules, out, bi):
    nodes, n_par = down.shape[1], down.shape[2]
    m, s = rules.shape[1], rules.shape[2]
    guarded = 0
    for i in range(nodes):
        for k in range(s):
            out[bi, s * i + k, :] = 0.0
        for a in range(n_par):
            weight = down[bi, i, a]
            if weight == 0.0:
                continue
            for j in range(m):
                for k in range(s):
                    prod = weight
                    for k2 in range(s):
                        if k2 != k:
                            prod *= child_up[bi, s * i + k2, rules[a, j, k2]]
                    out[bi, s * i + k, rules[a, j, k]] += prod
        for k in range(s):
            guarded += _normalize(out[bi, s * i + k])
    return guarded


@njit(cache=True)
def _sample_one(parents, child_up, rules, uniforms, out, bi):
    nodes = parents.shape[1]
    m, s = rules.shape[1], rules.shape[2]
    weights = np.empty(m)
    for i in range(nodes):
        a = parents[bi, i]
        total = 0.0
        for j in range(m):
            prod = 1.0
            for k in range(s):
                prod *= child_up[bi, s * i + k, rules[a, j, k]]
            weights[j] = prod
            total += prod
        pick = m - 1
        if total > 0.0:
            threshold = uniforms[bi, i] * total
            running = 0.0
            for j in range(m):
                running += weights[j]
                if threshold < running:
                    pick = j
                    break
        else:  # inconsistent evidence (guarded messages): fall back to a uniform rule
            pick = min(int(uniforms[bi, i] * m), m - 1)
        for k in range(s):
            out[bi, s * i + k] = rules[a, pick, k]


# one serial and one parallel driver per kernel: a parallel region costs a thread-pool
# round trip, which dominates for a handful of small trees
@njit(cache=True, parallel=True)
def _upward_parallel(child, rules, out, threads):
    """``threads``: numba's current number of threads (ids ``get_thread_id() < threads``)."""
    guarded = np.zeros(out.shape[0], dtype=np.int64)
    local, acc, prod = _upward_scratch(child, rules, out, threads)
    for bi in prange(out.shape[0]):
        t = get_thread_id()
        guarded[bi] = _upward_one(child, rules, out, bi, local[t], acc[t], prod[t])
    return guarded.sum()


@njit(cache=True)
def _upward_serial(child, rules, out):
    guarded = 0
    local, acc, prod = _upward_scratch(child, rules, out, 1)
    for bi in range(out.shape[0]):
        guarded += _upward_one(child, rules, out, bi, local[0], acc[0], prod[0])
    return guarded


@njit(cache=True, parallel=True)
def _downward_parallel(down, child_up, rules, out):
    guarded = np.zeros(down.shape[0], dtype=np.int64)
    for bi in prange(down.shape[0]):
        guarded[bi] = _downward_one(down, child_up, rules, out, bi)
    return guarded.sum()


@njit(cache=True)
def _downward_serial(down, child_up, rules, out):
    guarded = 0
    for bi in range(down.shape[0]):
        guarded += _downward_one(down, child_up, rules, out, bi)
    return guarded


@njit(cache=True, parallel=True)
def _sample_parallel(parents, child_up, rules, uniforms, out):
    for bi in prange(parents.shape[0]):
        _sample_one(parents, child_up, rules, uniforms, out, bi)


@njit(cache=True)
def _sample_serial(parents, child_up, rules, uniforms, out):
    for bi in range(parents.shape[0]):
        _sample_one(parents, child_up, rules, uniforms, out, bi)


#: work (multiply-adds) per level below which the serial drivers run
PARALLEL_MIN_WORK = 1 << 16


def _parallel(batch: int, work_per_tree: int) -> bool:
    """Whether a level (or the leaf pass) runs on the parallel driver."""
    return batch > 1 and batch * work_per_tree >= PARALLEL_MIN_WORK


#: trees handed to a thread at a time by the parallel drivers: threads that finish early (a
#: core shared with other work slows one of them) take over the rest
PARALLEL_CHUNK = 8


def _chunked(run, *args):
    """``run(*args)`` with the batch handed out in chunks of :data:`PARALLEL_CHUNK` trees."""
    import numba

    previous = numba.get_parallel_chunksize()
    numba.set_parallel_chunksize(PARALLEL_CHUNK)
    try:
        return run(*args)
    finally:
        numba.set_parallel_chunksize(previous)


def upward_level(child, rules, out) -> int:
    """One upward level (compiled): ``out[b, i, a] ∝ sum_j prod_k child[b, s*i + k, R[a, j, k]]``;
    returns the number of guarded (all-zero) messages. Population dynamics iterates it."""
    if _parallel(out.shape[0], out.shape[1] * rules.size):
        return int(_chunked(_upward_parallel, child, rules, out, get_num_threads()))
    return int(_upward_serial(child, rules, out))


def _downward_level_numba(down, child_up, rules, out) -> int:
    if _parallel(down.shape[0], down.shape[1] * rules.size):
        return int(_chunked(_downward_parallel, down, child_up, rules, out))
    return int(_downward_serial(down, child_up, rules, out))


def _sample_level_numba(parents, child_up, rules, uniforms, out) -> None:
    if _parallel(parents.shape[0], parents.shape[1] * rules.size):
        _chunked(_sample_parallel, parents, child_up, rules, uniforms, out)
    else:
        _sample_serial(parents, child_up, rules, uniforms, out)


@njit(cache=True)
def _leaf_tree(nu, out, bi):
    """Tree ``bi``: ``out[bi, i]`` = ``nu[bi, i]`` normalized (:func:`_normalize`); returns the
    guarded messages and the entries that are negative or not finite."""
    guarded, bad = 0, 0
    for i in range(nu.shape[1]):
        for a in range(nu.shape[2]):
            x = nu[bi, i, a]
            if not (x >= 0.0 and x < np.inf):  # False for nan, inf and negatives
                bad += 1
            out[bi, i, a] = x
        guarded += _normalize(out[bi, i])
    return guarded, bad


@njit(cache=True, parallel=True)
def _leaves_parallel(nu, out):
    guarded = np.zeros(nu.shape[0], dtype=np.int64)
    bad = np.zeros(nu.shape[0], dtype=np.int64)
    for bi in prange(nu.shape[0]):
        guarded[bi], bad[bi] = _leaf_tree(nu, out, bi)
    return guarded.sum(), bad.sum()


@njit(cache=True)
def _leaves_serial(nu, out):
    guarded, bad = 0, 0
    for bi in range(nu.shape[0]):
        g, b = _leaf_tree(nu, out, bi)
        guarded += g
        bad += b
    return guarded, bad


def normalized_leaves(nu: np.ndarray) -> tuple[np.ndarray, int]:
    """``(leaf messages, guarded)``: each leaf likelihood ``nu[b, i]`` (float64, C order, any
    values) normalized, in one compiled pass that also checks the values (a negative or
    non-finite entry: :class:`~diffphase.errors.ParameterError`, as :func:`check_likelihood`;
    one pass instead of a check, a copy and a normalization, each over the largest array of the
    tree)."""
    out = np.empty_like(nu)
    if _parallel(nu.shape[0], nu.shape[1] * nu.shape[2]):
        guarded, bad = _chunked(_leaves_parallel, nu, out)
    else:
        guarded, bad = _leaves_serial(nu, out)
    if bad:
        _refuse_leaf_values()
    return out, int(guarded)


# ----------------------------------------------------------------------------- array engine
def _chunks(batch: int, per_sample: int):
    size = max(1, ARRAY_CHUNK_FLOATS // max(per_sample, 1))
    for start in range(0, batch, size):
        yield slice(start, min(batch, start + size))


def _normalize_array(xp, x):
    total = x.sum(axis=-1, keepdims=True)
    bad = ~(xp.isfinite(total) & (total > 0))
    x = xp.where(bad, 1.0 / x.shape[-1], x / xp.where(bad, 1.0, total))
    return x, int(bad.sum())


def _gather_children(xp, child, rules, s):
    """``G[b, i, a, j, k] = child[b, s*i + k, R[a, j, k]]``."""
    batch, n_children, v = child.shape
    c4 = child.reshape(batch, n_children // s, s, v)
    return xp.stack([c4[:, :, k, :][:, :, rules[:, :, k]] for k in range(s)], axis=-1)


def _upward_level_array(xp, child, rules):
    s = rules.shape[2]
    n_par, m = rules.shape[0], rules.shape[1]
    nodes = child.shape[1] // s
    out = xp.empty((child.shape[0], nodes, n_par))
    guarded = 0
    for sl in _chunks(child.shape[0], nodes * n_par * m * s):
        acc = _gather_children(xp, child[sl], rules, s).prod(axis=-1).sum(axis=-1)
        out[sl], g = _normalize_array(xp, acc)
        guarded += g
    return out, guarded


def _downward_level_array(xp, down, child_up, rules):
    n_par, m, s = rules.shape
    v = child_up.shape[2]
    batch, nodes, _ = down.shape
    onehots = [xp.eye(v)[rules[:, :, k].reshape(-1)] for k in range(s)]  # (n_par*m, v)
    out = xp.empty((batch, nodes * s, v))
    guarded = 0
    for sl in _chunks(batch, nodes * n_par * m * s):
        gathered = _gather_children(xp, child_up[sl], rules, s)  # (B, nodes, n_par, m, s)
        parts = []
        for k in range(s):
            others = gathered[..., [q for q in range(s) if q != k]].prod(axis=-1)
            weight = (down[sl][:, :, :, None] * others).reshape(-1, nodes, n_par * m)
            parts.append(weight @ onehots[k])  # (B, nodes, v)
        block = xp.stack(parts, axis=2).reshape(-1, nodes * s, v)
        out[sl], g = _normalize_array(xp, block)
        guarded += g
    return out, guarded


def _sample_level_array(xp, parents, child_up, rules, uniforms):
    n_par, m, s = rules.shape
    batch, nodes = parents.shape
    c4 = child_up.reshape(batch, nodes, s, -1)
    chosen = rules[parents]  # (B, nodes, m, s)
    weights = xp.ones((batch, nodes, m))
    for k in range(s):
        weights = weights * xp.take_along_axis(c4[:, :, k, :], chosen[..., k], axis=-1)
    cumulative = xp.cumsum(weights, axis=-1)
    total = cumulative[..., -1:]
    pick = (cumulative <= uniforms[..., None] * total).sum(axis=-1)
    pick = xp.where(total[..., 0] > 0, xp.minimum(pick, m - 1),
                    xp.minimum((uniforms * m).astype(xp.int64), m - 1))
    children = xp.take_along_axis(chosen, pick[:, :, None, None], axis=2)[:, :, 0, :]
    return children.reshape(batch, nodes * s)


# ----------------------------------------------------------------------------- public API
def _engine(engine: str, device: str):
    require_choice("engine", engine, ENGINES)
    xp, name = get_array_module(device)
    if name == "gpu":
        engine = "array"
    return engine, xp


def upward_messages(rules: list[np.ndarray], nu: np.ndarray, engine: str = "numba",
                    device: str = "cpu") -> tuple[list[np.ndarray], int]:
    """Upward messages at every level and the number of guarded (all-zero) messages."""
    compiled = engine == "numba" and device == "cpu"  # values checked by normalized_leaves
    nu = check_likelihood(rules, nu, values=not compiled)
    engine, xp = _engine(engine, device)
    if engine == "numba":
        leaf, guarded = normalized_leaves(nu)
        up = [leaf]
        for level in range(len(rules) - 1, -1, -1):
            r = rules[level]
            out = np.empty((nu.shape[0], up[0].shape[1] // r.shape[2], r.shape[0]))
            guarded += upward_level(up[0], r, out)
            up.insert(0, out)
        return up, int(guarded)
    leaf, guarded = _normalize_array(xp, xp.asarray(nu))
    up = [leaf]
    for level in range(len(rules) - 1, -1, -1):
        out, g = _upward_level_array(xp, up[0], xp.asarray(rules[level]))
        up.insert(0, out)
        guarded += g
    return up, int(guarded)


def downward_messages(rules: list[np.ndarray], up: list, engine: str = "numba",
                      device: str = "cpu") -> tuple[list, int]:
    """Downward messages at every level (root: the uniform prior over classes)."""
    engine, xp = _engine(engine, device)
    batch, n_c = up[0].shape[0], up[0].shape[2]
    down = [xp.full((batch, 1, n_c), 1.0 / n_c)]
    guarded = 0
    for level, r in enumerate(rules):
        child_up = up[level + 1]
        if engine == "numba":
            out = np.empty_like(child_up)
            guarded += _downward_level_numba(down[level], child_up, r, out)
        else:
            out, g = _downward_level_array(xp, down[level], child_up, xp.asarray(r))
            guarded += g
        down.append(out)
    return down, int(guarded)


def belief_propagation(rules: list[np.ndarray], nu: np.ndarray, engine: str = "numba",
                       device: str = "cpu") -> BPResult:
    """Upward and downward messages and marginals ``∝ up * down`` at every node (host arrays)."""
    up, g_up = upward_messages(rules, nu, engine, device)
    down, g_down = downward_messages(rules, up, engine, device)
    xp, _ = get_array_module(device)
    marginals, g_marg = [], 0
    for u, d in zip(up, down, strict=True):
        marg, g = _normalize_array(xp, u * d)
        marginals.append(to_numpy(marg))
        g_marg += g
    return BPResult([to_numpy(u) for u in up], [to_numpy(d) for d in down], marginals,
                    g_up + g_down + g_marg)


def sample_posterior(rules: list[np.ndarray], up: list, rng: np.random.Generator,
                     engine: str = "numba", device: str = "cpu") -> list[np.ndarray]:
    """Whole trees drawn exactly from the posterior; ``levels[l]`` of shape ``(batch, s**l)``."""
    engine, xp = _engine(engine, device)
    batch = up[0].shape[0]
    root_probs = to_numpy(up[0][:, 0, :])
    u_root = rng.random(batch)
    cumulative = np.cumsum(root_probs, axis=1)
    root = np.minimum((cumulative <= u_root[:, None] * cumulative[:, -1:]).sum(axis=1),
                      root_probs.shape[1] - 1)
    levels = [root[:, None].astype(np.int64)]
    for level, r in enumerate(rules):
        parents = levels[-1]
        uniforms = rng.random(parents.shape)
        if engine == "numba":
            out = np.empty((batch, parents.shape[1] * r.shape[2]), dtype=np.int64)
            _sample_level_numba(parents, up[level + 1], r, uniforms, out)
        else:
            out = to_numpy(_sample_level_array(xp, xp.asarray(parents), up[level + 1],
                                               xp.asarray(r), xp.asarray(uniforms)))
        levels.append(out)
    return levels
