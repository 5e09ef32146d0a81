"""Forward-noised probes at many noise levels from one pair of matrix products (THEORY B,
"Empirical score").

Contract
--------
For probes ``x_i(tau) = p_i + sqrt(tau) z_i`` (centres ``p`` (m, r) and noise ``z`` (m, r), the
same at every ``tau``; variance-exploding, ``a = 1``, ``D = tau``) and training points ``y_mu``
(N, r), :class:`NoisedProbes` holds

    ``A_{i mu} = |p_i - y_mu|^2``  and  ``B_{i mu} = z_i . (p_i - y_mu)``,

so that ``|x_i - y_mu|^2 = A + 2 sqrt(tau) B + tau |z_i|^2`` at every ``tau`` without another
product. ``A`` comes from ``|p|^2 - 2 p.y + |y|^2`` (float64, clipped at 0; exactly 0 and
``B = 0`` at a probe's own training point, ``owners``). Every point enters every sum: nothing is
truncated.

* :meth:`NoisedProbes.log_sums`: per probe, ``ln sum_{mu < n} exp(-|x - y_mu|^2 / (2 tau))`` for
  nested prefixes ``n`` of the training points (log-sum-exp segment by segment);
* :meth:`NoisedProbes.own_weights`: per ``tau`` and probe, the posterior weight of the probe's
  own training point and ``sum_mu w_mu^2``.

Memory: ``A`` and ``B`` are kept (``16 m N`` bytes) when they fit ``cache_bytes``; otherwise
they are rebuilt block of probes by block at each call. A block of ``rows`` probes holds about
five ``(rows, N)`` float64 arrays, with ``rows`` from :func:`probe_rows` so that they fit
``chunk_bytes``. Host (numpy) arrays.
"""

from __future__ import annotations

import numpy as np

from .routes import DEFAULT_CHUNK_BYTES

#: ``(rows, N)`` float64 arrays alive at once in a block of probes (A, B and three temporaries)
BLOCK_ARRAYS = 5
#: ``A`` and ``B`` of all probes are kept between calls when they fit in this many bytes
DEFAULT_PROBE_CACHE_BYTES = 512 * 2**20


def probe_rows(n_points: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Probes per block: ``BLOCK_ARRAYS`` arrays of ``(rows, N)`` doubles fit ``chunk_bytes``."""
    return max(1, int(chunk_bytes // (8 * BLOCK_ARRAYS * max(int(n_points), 1))))


def noised_probe_bytes(m: int, n_points: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                       cache_bytes: int = DEFAULT_PROBE_CACHE_BYTES) -> float:
    """Peak bytes of a :class:`NoisedProbes` beyond its inputs: the kept ``A``, ``B`` (when
    they fit ``cache_bytes``) and one block's temporaries."""
    kept = 16.0 * m * n_points
    block = 8.0 * BLOCK_ARRAYS * min(m, probe_rows(n_points, chunk_bytes)) * n_points
    return (kept if kept <= cache_bytes else 0.0) + block


class NoisedProbes:
    """``A`` and ``B`` of the module contract for probes ``centres + sqrt(tau) noise``.

    Parameters
    ----------
    centres, noise : (m, r) probe centres and their noise directions.
    points : (N, r) training points (their prefixes are the nested references of
        :meth:`log_sums`).
    owners : (m,) index of each probe's own training point, or None (held-out probes).
    chunk_bytes, cache_bytes : memory budgets of a block and of the kept ``A``, ``B``.
    """

    def __init__(self, centres: np.ndarray, noise: np.ndarray, points: np.ndarray,
                 owners: np.ndarray | None = None, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 cache_bytes: int = DEFAULT_PROBE_CACHE_BYTES):
        self.centres = np.ascontiguousarray(centres, dtype=float)
        self.noise = np.ascontiguousarray(noise, dtype=float)
        self.points = np.ascontiguousarray(points, dtype=float)
        self.owners = None if owners is None else np.asarray(owners, dtype=np.int64)
        self.squared_norms = np.einsum("ij,ij->i", self.points, self.points)
        self.noise_norms = np.einsum("ij,ij->i", self.noise, self.noise)
        self.rows = probe_rows(self.points.shape[0], chunk_bytes)
        m, n = self.centres.shape[0], self.points.shape[0]
        self._kept = None
        if 16.0 * m * n <= cache_bytes:
            self._kept = [self._block(s) for s in self._slices()]

    def _slices(self):
        m = self.centres.shape[0]
        return [slice(start, min(m, start + self.rows)) for start in range(0, m, self.rows)]

    def _block(self, rows: slice) -> tuple[np.ndarray, np.ndarray]:
        """``(A, B)`` of the probes ``rows``: two matrix products with the training points."""
        p, z = self.centres[rows], self.noise[rows]
        cross = p @ self.points.T
        a = np.einsum("ij,ij->i", p, p)[:, None] - 2.0 * cross + self.squared_norms[None, :]
        np.maximum(a, 0.0, out=a)
        b = np.einsum("ij,ij->i", z, p)[:, None] - z @ self.points.T
        if self.owners is not None:
            own = self.owners[rows]
            a[np.arange(own.size), own] = 0.0
            b[np.arange(own.size), own] = 0.0
        return a, b

    def _blocks(self):
        slices = self._slices()
        if self._kept is not None:
            yield from zip(slices, self._kept, strict=True)
            return
        for rows in slices:
            yield rows, self._block(rows)

    def _logits(self, ab: tuple[np.ndarray, np.ndarray], rows: slice, tau: float) -> np.ndarray:
        """``-|x - y_mu|^2 / (2 tau)`` of the block's probes at ``tau`` (a new array)."""
        a, b = ab
        out = b * (2.0 * np.sqrt(tau))
        out += a
        out += (tau * self.noise_norms[rows])[:, None]
        out *= -0.5 / tau
        return out

    def log_sums(self, tau: float, sizes) -> np.ndarray:
        """``(len(sizes), m)``: per probe, ``ln sum_{mu < n} exp(-|x - y_mu|^2 / (2 tau))`` for
        each prefix size ``n`` of ``sizes`` (increasing, at most ``N``)."""
        sizes = [int(s) for s in sizes]
        bounds = [0] + sizes
        out = np.empty((len(sizes), self.centres.shape[0]))
        for rows, ab in self._blocks():
            logits = self._logits(ab, rows, tau)
            total = np.full(logits.shape[0], -np.inf)
            for k in range(len(sizes)):
                total = np.logaddexp(total, _log_sum_exp(logits[:, bounds[k]:bounds[k + 1]]))
                out[k, rows] = total
        return out

    def own_weights(self, taus) -> tuple[np.ndarray, np.ndarray]:
        """``(own, purity)``, each ``(len(taus), m)``: the posterior weight of each probe's own
        training point and ``sum_mu w_mu^2``, over all ``N`` points (needs ``owners``)."""
        if self.owners is None:
            raise ValueError("own_weights needs the probes' owners")
        taus = np.atleast_1d(np.asarray(taus, dtype=float))
        m = self.centres.shape[0]
        own, purity = np.empty((taus.size, m)), np.empty((taus.size, m))
        for rows, ab in self._blocks():
            for k, tau in enumerate(taus):
                logits = self._logits(ab, rows, float(tau))
                norm = _log_sum_exp(logits)
                # the own point's logit is -|z|^2 / 2 (A = B = 0 there)
                own[k, rows] = np.exp(-0.5 * self.noise_norms[rows] - norm)
                logits -= norm[:, None]
                logits *= 2.0
                purity[k, rows] = np.exp(_log_sum_exp(logits))
        return own, purity


def _log_sum_exp(logits: np.ndarray) -> np.ndarray:
    """``ln sum exp`` along the last axis, stable (the row maximum taken out); ``-inf`` for an
    empty row."""
    if logits.shape[1] == 0:
        return np.full(logits.shape[0], -np.inf)
    top = logits.max(axis=1)
    shifted = np.exp(logits - top[:, None])
    return top + np.log(shifted.sum(axis=1))
