"""Public front of the empirical engine: :class:`EmpiricalScore` (THEORY B, "Empirical score").

Contract
--------
For training points ``y_1..y_N`` in ``R^d`` and query points ``x`` (shape ``(M, d)`` or ``(d,)``)
at one or many times (``a`` and ``D`` scalars or one value per query), with the forward process
``x = a y + sqrt(D) z`` (THEORY section 0), :class:`EmpiricalScore` returns the posterior weights,
the score ``s(x) = (a ybar - x) / D``, ``N_eff``, the weight entropy, the log-density, the
Jacobian ``J = -I/D + (a^2/D^2) Cov_w(y)`` and the spectra of ``Jn = D J = -I + Cov_w(y)/tau``,
batched over queries, as :class:`PosteriorMoments` and :class:`JacobianSpectrum` where several
come together. Inputs are checked here (:mod:`.points`) before any heavy work; the work itself is
done by :func:`.blocks.posterior_statistics` and the modules it calls. Results stay on the chosen
device (bring them back with :func:`diffphase.backend.to_numpy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...backend import get_array_module
from ...errors import ParameterError
from .blocks import posterior_statistics
from .dense import log_weights, second_moments
from .points import TrainingPoints, check_training_data, prepare_queries
from .routes import DEFAULT_CHUNK_BYTES, DEFAULT_FEATURE_CACHE_BYTES
from .subspace import to_working
from .truncated import truncation_eps


@dataclass
class PosteriorMoments:
    """Posterior statistics of the training points at each query (arrays of the backend).

    Attributes
    ----------
    mean : (M, d) ``ybar = E_w[y]`` in the data's own coordinates.
    score : (M, d) ``(a ybar - x) / D``.
    n_eff : (M,) ``1 / sum w^2``.
    entropy : (M,) ``-sum w ln w``.
    log_density : (M,) ``ln p^N(x) = ln (1/N) sum_mu N(x; a y_mu, D I)``.
    covariance : (M, d, d) ``Cov_w(y)`` or None when not asked for.
    covariance_eigenvalues : (M, d) ascending eigenvalues of ``Cov_w(y)`` or None.
    neglected_mass : (M,) total weight dropped by truncation (0 without truncation).
    kept : (M,) number of training points kept per query.
    tau : (M,) ``D / a^2``.
    covariance_error_bound : (M,) bound on the spectral norm of the covariance's truncation error
        (0 when exact) or None when the covariance was not asked for.
    """

    mean: object
    score: object
    n_eff: object
    entropy: object
    log_density: object
    tau: object
    neglected_mass: object
    kept: object
    covariance: object | None = None
    covariance_eigenvalues: object | None = None
    covariance_error_bound: object | None = None
    notes: dict = field(default_factory=dict)


@dataclass
class JacobianSpectrum:
    """Eigenvalues of the normalized Jacobian ``Jn = -I + Cov_w(y)/tau`` at each query.

    ``eigenvalues`` (M, d) ascending (``>= -1``); ``error_bound`` (M,) the bound on their error from
    truncation (0 when exact); ``n_eff``, ``neglected_mass``, ``kept``, ``tau`` per query;
    ``methods`` per block (``"dense"``, ``"truncated"`` or ``"mixed"``).
    """

    eigenvalues: object
    tau: object
    n_eff: object
    neglected_mass: object
    error_bound: object
    kept: object
    methods: list[str]


def _first_if(single: bool, value):
    return value[0] if single and value is not None else value


class EmpiricalScore:
    """Score, weights and Jacobian of the empirical distribution of ``data`` (THEORY B).

    Parameters
    ----------
    data : (N, d) training points.
    device : ``"cpu"``, ``"gpu"`` or ``"auto"`` (falls back to the CPU with a warning).
    chunk_bytes : memory budget for one block of temporaries: the engine's peak memory is one
        centred copy of the data plus ``O(chunk_bytes + 16 N)`` bytes and the cached features
        (``N = 10^6``, ``d = 64``: 1.3 GB peak resident for the whole process, caller's data
        included, measured in ``benchmarks/bench_memorization.py``).
    feature_cache_bytes : the symmetric outer-product features ``(N, d(d+1)/2)`` used by the dense
        second moments are built once and kept when they fit in this budget (repeated calls on the
        same data, as along trajectories, then cost one matrix product each); otherwise they are
        rebuilt chunk by chunk at every call. ``0`` disables the cache.
    reduce_subspace : when the centred data lie in an ``r``-dimensional subspace (``r < d``, up to
        ``SUBSPACE_RESIDUAL_RTOL * R`` of :mod:`.routes`; see :func:`.subspace.exact_subspace`),
        work in coordinates of that subspace: weights, moments and the ``r`` nonzero covariance
        eigenvalues need ``r`` instead of ``d`` coordinates (the other ``d - r`` eigenvalues are
        exactly 0) and the dense second moments ``r(r+1)/2`` instead of ``d(d+1)/2`` features per
        point. The points are replaced by their projections; the effect of the measured
        ``subspace_residual`` is added to the reported covariance error bound (0 when the
        residual is 0; about ``1e-14 R^2 / tau`` for points generated in a subspace in double
        precision; the bound is derived in :mod:`.subspace`).

    Attributes ``rank`` (the working dimension ``r``, ``d`` without reduction), ``basis``
    ((d, r) or None) and ``subspace_residual`` describe the reduction; ``radius`` is the largest
    distance ``R`` of a training point from the data mean.

    Truncation (``tol`` or ``max_neglected_mass``; :mod:`.truncated`) keeps per query only the
    fewest largest weights whose complement has mass at most ``eps``, with
    ``eps = max_neglected_mass`` or ``eps = tol * tau / (4 R^2)``, whichever is smaller, and
    reports the neglected mass and a rigorous bound on each eigenvalue's error. Whether a block is
    worth truncating is decided by the cost model of :mod:`.routes`.
    """

    def __init__(
        self,
        data,
        device: str = "cpu",
        *,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
        reduce_subspace: bool = True,
    ):
        host = check_training_data(data)
        if int(chunk_bytes) < 2**16:
            raise ParameterError("chunk_bytes", chunk_bytes, ">= 65536")
        self.xp, self.device = get_array_module(device)
        #: the training points as the routes read them (centred, reduced, with the feature cache)
        self.points = TrainingPoints.build(
            host,
            self.xp,
            chunk_bytes=int(chunk_bytes),
            feature_cache_bytes=int(feature_cache_bytes),
            reduce_subspace=reduce_subspace,
        )

    # ------------------------------------------------------------------ the data, described
    @property
    def dim(self) -> int:
        """``d``, the dimension of the data."""
        return self.points.dim

    @property
    def rank(self) -> int:
        """The working dimension ``r`` (``d`` without a subspace reduction)."""
        return self.points.rank

    @property
    def basis(self):
        """(d, r) orthonormal basis of the data's exact subspace, or None without a reduction."""
        return self.points.basis

    @property
    def subspace_residual(self) -> float:
        """Largest distance of a centred training point from the span of ``basis``."""
        return self.points.subspace_residual

    @property
    def radius(self) -> float:
        """``R``, the largest distance of a training point from the data mean."""
        return self.points.radius

    # ------------------------------------------------------------------ delegation
    def _run(self, x, a, D, *, tol=None, max_neglected_mass=None, want="mean"):
        xq, a_arr, d_arr, single = prepare_queries(self.xp, self.points, x, a, D)
        eps = truncation_eps(self.xp, d_arr / (a_arr * a_arr), tol, max_neglected_mass,
                             self.points.radius)
        return posterior_statistics(self.xp, self.points, xq, a_arr, d_arr, eps=eps,
                                    want=want), single

    def _log_weights(self, x, a, D):
        """Unnormalized log-weights (M, N) of checked queries, and whether ``x`` was one."""
        xq, a_arr, d_arr, single = prepare_queries(self.xp, self.points, x, a, D)
        return log_weights(to_working(xq, self.points.basis), a_arr, d_arr, self.points), single

    def _second_moments_dense(self, weights):
        """``sum_mu w_mu y_mu y_mu^T`` (working coordinates) for every row of ``weights`` (M, N),
        the dense route's product (timed by ``benchmarks/bench_memorization.py``)."""
        return second_moments(self.xp, self.points, weights)

    # ------------------------------------------------------------------ public API
    def weights(self, x, a, D):
        """Posterior weights ``w_mu(x)``, shape (M, N) (or (N,) for one query); rows sum to one."""
        logw, single = self._log_weights(x, a, D)
        logw -= self.xp.max(logw, axis=1, keepdims=True)
        w = self.xp.exp(logw)
        w /= self.xp.sum(w, axis=1, keepdims=True)
        return w[0] if single else w

    def log_weights(self, x, a, D):
        """Normalized ``ln w_mu(x)`` (finite even where ``w_mu`` underflows), shape like weights."""
        logw, single = self._log_weights(x, a, D)
        top = self.xp.max(logw, axis=1, keepdims=True)
        logw = logw - top - self.xp.log(self.xp.sum(self.xp.exp(logw - top), axis=1, keepdims=True))
        return logw[0] if single else logw

    def moments(
        self,
        x,
        a,
        D,
        *,
        covariance: bool = False,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ) -> PosteriorMoments:
        """All posterior statistics at once (see :class:`PosteriorMoments`). Truncation (``tol``
        or ``max_neglected_mass``, see the class docstring) applies to the covariance only."""
        res, single = self._run(
            x,
            a,
            D,
            tol=tol,
            max_neglected_mass=max_neglected_mass,
            want="covariance" if covariance else "mean",
        )
        mean_c = res["mean"]
        score = (res["a"][:, None] * mean_c - res["xq"]) / res["D"][:, None]

        def pick(value):
            return _first_if(single, value)

        return PosteriorMoments(
            mean=pick(mean_c + self.points.center_dev[None, :]),
            score=pick(score),
            n_eff=pick(res["n_eff"]),
            entropy=pick(res["entropy"]),
            log_density=pick(res["log_density"]),
            tau=pick(res["tau"]),
            neglected_mass=pick(res["neglected_mass"]),
            kept=pick(res["kept"]),
            covariance=pick(res["covariance"]),
            covariance_error_bound=pick(res["covariance_error_bound"]) if covariance else None,
            notes={"methods": res["methods"]},
        )

    def score(self, x, a, D):
        """Empirical score ``s(x) = (a ybar(x) - x) / D``, same shape as ``x``."""
        return self.moments(x, a, D).score

    def n_eff(self, x, a, D):
        """Effective number of points ``1 / sum_mu w_mu^2`` in ``[1, N]``."""
        return self.moments(x, a, D).n_eff

    def entropy(self, x, a, D):
        """Weight entropy ``-sum_mu w_mu ln w_mu`` in ``[0, ln N]``."""
        return self.moments(x, a, D).entropy

    def log_density(self, x, a, D):
        """``ln p_t^N(x)`` of the empirical mixture ``(1/N) sum_mu N(a y_mu, D I)``."""
        return self.moments(x, a, D).log_density

    def jacobian(
        self,
        x,
        a,
        D,
        *,
        normalized: bool = False,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ):
        """Closed-form Jacobian ``J = -I/D + (a^2/D^2) Cov_w(y)`` (or ``Jn = D J`` when
        ``normalized``), shape (M, d, d) (or (d, d) for one query); symmetric. With truncation the
        spectral-norm error of ``Jn`` is at most ``tol`` (bounds per query: :meth:`moments`)."""
        res, single = self._run(
            x, a, D, tol=tol, max_neglected_mass=max_neglected_mass, want="covariance"
        )
        eye = self.xp.eye(self.dim)[None, :, :]
        jn = res["covariance"] / res["tau"][:, None, None] - eye
        jac = jn if normalized else jn / res["D"][:, None, None]
        return jac[0] if single else jac

    def jacobian_spectrum(
        self,
        x,
        a,
        D,
        *,
        tol: float | None = None,
        max_neglected_mass: float | None = None,
    ) -> JacobianSpectrum:
        """Eigenvalues of ``Jn = -I + Cov_w(y)/tau`` at each query (ascending, ``>= -1``).

        With ``tol`` the weights are truncated so that each eigenvalue is exact to ``tol``
        (absolute); with ``max_neglected_mass`` at most that posterior mass is dropped per query.
        Either way the neglected mass and a rigorous bound on each eigenvalue's error
        (``error_bound``, computed from the dropped points) are reported per query. Eigenvalues of
        the unnormalized ``J`` are ``eigenvalues / D``; singular values of ``Jn`` are their
        absolute values (``Jn`` is symmetric).
        """
        res, single = self._run(
            x, a, D, tol=tol, max_neglected_mass=max_neglected_mass, want="spectrum"
        )
        eig = res["covariance_eigenvalues"] / res["tau"][:, None] - 1.0
        bound = res["covariance_error_bound"] / res["tau"]

        def pick(value):
            return _first_if(single, value)

        return JacobianSpectrum(
            eigenvalues=pick(eig),
            tau=pick(res["tau"]),
            n_eff=pick(res["n_eff"]),
            neglected_mass=pick(res["neglected_mass"]),
            error_bound=pick(bound),
            kept=pick(res["kept"]),
            methods=res["methods"],
        )


def empirical_score(x, data, a, D, device: str = "cpu"):
    """Score of the empirical distribution of ``data`` at ``x`` (THEORY B): ``(a ybar - x)/D``.

    ``x``: (M, d) or (d,); ``data``: (N, d); ``a``, ``D``: scalars or one per query.
    """
    return EmpiricalScore(data, device=device).score(x, a, D)
