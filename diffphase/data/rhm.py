"""The random hierarchy model (RHM) generator (THEORY C, "Data (RHM)").

Contract: :class:`RandomHierarchyModel` draws, from its ``seed``, the production rules of every
level and then samples data with any ``numpy.random.Generator``:

* ``rules[l]`` has shape ``(n_parents_l, m, s)``: ``rules[l][a, j]`` is the ``s``-tuple of values
  that rule ``j`` of a level-``l`` node of value ``a`` produces at level ``l + 1``
  (``n_parents_0 = n_c`` at the root, ``v`` below). Tuples are distinct within a level, so every
  valid string has exactly one derivation.
* ``sample(n, rng)`` returns ``(leaves, classes)`` with leaves of shape ``(n, s**L)``;
  ``sample_trees(n, rng)`` returns every level, ``levels[l]`` of shape ``(n, s**l)``.
* Level 0 is the root (the class) and level ``L`` the leaves. Child ``k`` of node ``i`` at level
  ``l`` is node ``s*i + k`` at level ``l + 1``.
* ``n_data = n_c * m**((s**L - 1)/(s - 1))`` (an exact Python integer); ``enumerate_data()``
  lists every datum when that number is small.

Bad sizes (non-positive, ``m > v**(s-1)``, ``n_c * m > v**s``, a tree too large for memory) raise
:class:`~diffphase.errors.ParameterError` at construction, before anything is drawn.
"""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import ParameterError, require_int

#: largest number of leaves a single tree may have (s**L), a guard against impossible requests
MAX_LEAVES = 2**22
#: largest number of data ``enumerate_data`` will list
MAX_ENUMERATED = 200_000
#: largest number of tree nodes times samples a single ``sample_trees`` call may allocate
MAX_SAMPLE_NODES = 2**28


def check_rhm_sizes(v: int, m: int, s: int, L: int, n_c: int | None = None) -> tuple[int, ...]:
    """Validate RHM sizes and return ``(v, m, s, L, n_c)`` as integers (THEORY C)."""
    v = require_int("v", v, 2)
    s = require_int("s", s, 2)
    m = require_int("m", m, 1)
    L = require_int("L", L, 1)
    n_c = v if n_c is None else require_int("n_c", n_c, 1)
    if m > v ** (s - 1):
        raise ParameterError("m", m, f"1 <= m <= v**(s-1) = {v ** (s - 1)}")
    if n_c * m > v**s:
        raise ParameterError("n_c", n_c, f"n_c * m <= v**s = {v**s} (n_c <= {v**s // m})")
    if s**L > MAX_LEAVES:
        raise ParameterError("L", L, f"s**L <= {MAX_LEAVES} leaves (a tree too large for memory)")
    return v, m, s, L, n_c


class RandomHierarchyModel:
    """Random hierarchy model with vocabulary ``v``, ``m`` synonyms, branching ``s``, depth ``L``.

    Parameters
    ----------
    v : vocabulary size (number of symbols at every level below the root), ``>= 2``.
    m : synonyms (rules per symbol), ``1 <= m <= v**(s-1)``.
    s : branching factor (children per node), ``>= 2``.
    L : depth (number of rule applications; the leaves are level ``L``), ``>= 1``.
    n_c : number of classes (root symbols); default ``v``. Needs ``n_c * m <= v**s``.
    seed : seed of the rules (the data are drawn with the generator passed to ``sample``).

    Notes
    -----
    For each level independently ``n_par * m`` distinct ``s``-tuples are drawn without replacement
    out of the ``v**s`` possible ones and dealt ``m`` to each parent value. The fraction of tuples
    in use below the root is ``f = m / v**(s-1)``.
    """

    def __init__(self, v: int, m: int, s: int, L: int, n_c: int | None = None, seed: int = 0):
        self.v, self.m, self.s, self.L, self.n_c = check_rhm_sizes(v, m, s, L, n_c)
        self.seed = require_int("seed", seed, 0)
        rng = np.random.default_rng([self.seed, 0x5248])
        self.rules: list[np.ndarray] = [self._draw_level_rules(rng, self.n_c if level == 0 else
                                                               self.v) for level in range(self.L)]

    def _draw_level_rules(self, rng: np.random.Generator, n_parents: int) -> np.ndarray:
        codes = rng.choice(self.v**self.s, size=n_parents * self.m, replace=False)
        digits = np.empty((codes.size, self.s), dtype=np.int64)
        rest = codes.astype(np.int64)
        for k in range(self.s - 1, -1, -1):
            digits[:, k] = rest % self.v
            rest //= self.v
        return digits.reshape(n_parents, self.m, self.s)

    # -- sizes
    @property
    def n_data(self) -> int:
        """Number of distinct data, ``n_c * m**((s**L - 1)/(s - 1))`` (exact integer)."""
        return self.n_c * self.m ** ((self.s**self.L - 1) // (self.s - 1))

    @property
    def f(self) -> float:
        """Fraction of ``s``-tuples in use below the root, ``m / v**(s-1)``."""
        return self.m / self.v ** (self.s - 1)

    @property
    def n_leaves(self) -> int:
        return self.s**self.L

    def n_parents(self, level: int) -> int:
        """Number of possible values of a node at ``level`` (``n_c`` at the root, ``v`` below)."""
        return self.n_c if level == 0 else self.v

    def __repr__(self) -> str:
        return (f"RandomHierarchyModel(v={self.v}, m={self.m}, s={self.s}, L={self.L}, "
                f"n_c={self.n_c}, seed={self.seed})")

    # -- sampling
    def sample_trees(self, n: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """Whole trees: ``levels[l]`` of shape ``(n, s**l)`` (level 0 the class, ``L`` leaves)."""
        n = require_int("n", n, 1)
        if n * 2 * self.n_leaves > MAX_SAMPLE_NODES:
            raise ParameterError("n", n, f"n * s**L <= {MAX_SAMPLE_NODES // 2} (memory guard)")
        rng = np.random.default_rng() if rng is None else rng
        levels = [rng.integers(0, self.n_c, size=(n, 1))]
        for level in range(self.L):
            parents = levels[-1]
            choice = rng.integers(0, self.m, size=parents.shape)
            children = self.rules[level][parents, choice]  # (n, s**level, s)
            levels.append(children.reshape(n, -1))
        return levels

    def sample(self, n: int,
               rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(leaves, classes)``: leaves ``(n, s**L)`` int, classes ``(n,)`` int."""
        levels = self.sample_trees(n, rng)
        return levels[-1], levels[0][:, 0]

    def enumerate_data(self, max_count: int = MAX_ENUMERATED) -> tuple[np.ndarray, np.ndarray]:
        """Every datum once: ``(leaves (n_data, s**L), classes (n_data,))``."""
        if self.n_data > max_count:
            raise ParameterError("n_data", self.n_data, f"<= {max_count} to enumerate every datum")
        strings = {c: [np.array([c])] for c in range(self.n_c)}
        for level in range(self.L):
            expanded = {}
            for c, nodes_list in strings.items():
                out = []
                for nodes in nodes_list:
                    options = [self.rules[level][a] for a in nodes]  # each (m, s)
                    for pick in itertools.product(range(self.m), repeat=len(nodes)):
                        out.append(np.concatenate([opt[j] for opt, j in zip(options, pick,
                                                                            strict=True)]))
                expanded[c] = out
            strings = expanded
        leaves = np.array([x for c in range(self.n_c) for x in strings[c]], dtype=np.int64)
        classes = np.repeat(np.arange(self.n_c), [len(strings[c]) for c in range(self.n_c)])
        return leaves, classes

    def level_value_distribution(self) -> list[np.ndarray]:
        """Law of a node's value at every level, averaged over the ``s**l`` positions.

        ``p_0`` is uniform over the ``n_c`` classes and
        ``p_{l+1}(b) = sum_a p_l(a) (1/(m s)) #{(j, k): R_l[a, j, k] = b}``: a parent of value
        ``a`` picks a rule uniformly and every position ``k`` of the tuple is one child.
        ``levels[l]`` has length ``n_par(l)``.
        """
        law = [np.full(self.n_c, 1.0 / self.n_c)]
        for rules in self.rules:
            n_par = rules.shape[0]
            counts = np.zeros((n_par, self.v))
            for k in range(self.s):
                np.add.at(counts, (np.repeat(np.arange(n_par), self.m), rules[:, :, k].ravel()),
                          1.0)
            law.append(law[-1] @ counts / (self.m * self.s))
        return law

    def is_valid_tree(self, levels: list[np.ndarray]) -> np.ndarray:
        """Per sample: does every node's children tuple equal one of its value's rules?"""
        n = levels[0].shape[0]
        ok = np.ones(n, dtype=bool)
        for level in range(self.L):
            parents = levels[level]
            children = levels[level + 1].reshape(n, -1, self.s)
            rules = self.rules[level][parents]  # (n, nodes, m, s)
            match = np.all(rules == children[:, :, None, :], axis=-1).any(axis=-1)
            ok &= match.all(axis=1)
        return ok
