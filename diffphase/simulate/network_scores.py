"""Trained networks as score fields: what a network predicts, at its own noise levels, turned
into the library's score ``score(x, a, D)`` (optional ``torch`` extra; THEORY 0 and E).

Contract. :class:`NetworkScore` wraps a torch module ``module(x_m, t_m)`` (``x_m`` of shape
``(n, *sample_shape)``, ``t_m`` a tensor of ``n`` time inputs; the output a tensor of the same
shape as ``x_m``, or an object with ``.sample``, or a tuple whose first entry is it) as a score
field: ``score(x, a, D)`` on ``(n, dim)`` numpy points, a dense autograd ``jacobian`` (reverse
mode, for small ``dim``) and :meth:`NetworkScore.torch_score`, the differentiable torch function
that the matrix-free spectra of :mod:`diffphase.simulate.matrix_free` differentiate.

The maths. The network sees ``x_m = a_m y + sqrt(D_m) z`` at its own noise level. A level
``(a, D)`` of the library has the noise-to-signal ratio ``tau = D / a^2`` (THEORY 0); the network
level with the same ``tau`` has ``x_m = c x``, ``c = a_m / a``, the same posterior of ``y`` and
of ``z``, and the score ``s(x; a, D) = c s_m(c x)``. Each prediction, with ``sigma = sqrt(D)``:

    epsilon  e = E[z | x_m]                   s = -e / sigma
    x0       y = E[y | x_m]                   s = (a y - x) / D
    v        v = E[a_m z - sqrt(D_m) y | x_m] y = (a_m x_m - sqrt(D_m) v) / (a_m^2 + D_m), then
                                              as x0 (in variance-preserving form a_m^2 + D_m = 1)
    score    s_m = grad log p_m (x_m)         s = c s_m
    edm-epsilon, edm-v (a_m = 1, D_m = tau, data scale sd): the module gets ``c_in x_m`` and
             ``y = c_skip x_m + c_out F`` with c_in = (tau + sd^2)^(-1/2),
             c_skip = sd^2 / (tau + sd^2), c_out = +-sqrt(tau) sd / sqrt(tau + sd^2)
             (+ for epsilon, - for v), then as x0.

Noise levels: the network's ``a_m`` and time input ``t_m`` at ``tau``, and the range of ``tau``
it was trained on (:class:`NoiseLevels`):

* ``timestep`` (DDPM, DDIM and every scheduler with ``alphas_cumprod``): training timesteps
  ``k = 0..T-1`` with ``abar_k``; ``tau_k = (1 - abar_k) / abar_k`` and ``a_m = sqrt(abar) =
  (1 + tau)^(-1/2)``. Between training timesteps ``t_m`` is linear in ``log tau`` (exact at every
  training timestep; the rule of diffusers' Euler-type schedulers, whose ``sigma = sqrt(tau)``).
  ``log-sigma`` passes ``log(sigma) / 4`` instead (continuous-time variants). diffusers keeps
  ``alphas_cumprod`` in float32 and the map uses those values, so the ``tau`` of a float64
  schedule with the same betas lands within about ``1e-4`` of the integer timestep.
* ``sigma`` (variance exploding, score-SDE VE): ``a_m = 1``, ``D_m = tau``, ``t_m = sqrt(tau)``;
  ``tau`` passes ``tau``; ``edm`` passes ``log(sigma) / 4`` (Karras sigmas, EDM).
* ``ou`` (variance preserving in continuous time): ``a_m = exp(-t_m)``, ``t_m = log(1 + tau) / 2``.

Checks: a level outside the trained range, an output of the wrong shape or with NaN is a
:class:`~diffphase.errors.ParameterError` naming the network (``--diffusers DIR``); whatever the
module raises comes back as :class:`~diffphase.simulate.jacobians.UserCodeError`.

Forward mode. :func:`forward_mode_ready` lets ``torch.func.jvp`` run through attention and
normalization layers: it selects the math kernel of scaled-dot-product attention (the CPU flash
kernel has no forward derivative) and makes the inputs of normalization layers contiguous
(forward-mode group norm fails on some strided tangents).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ParameterError, require_choice, require_int, require_positive
from .jacobians import call_user_code, checked_level, checked_output, checked_points
from .torch_adapter import require_torch, torch_device

#: what a network may predict
PREDICTIONS = ("epsilon", "v", "x0", "score", "edm-epsilon", "edm-v")
#: the time inputs of :class:`NoiseLevels`
TIME_INPUTS = ("timestep", "log-sigma", "sigma", "tau", "edm", "ou")
#: the signal scales of :class:`NoiseLevels`: variance preserving (``ou`` too), exploding
SIGNALS = ("vp", "ve")
#: a level this close (relative) to the trained range counts as inside it
RANGE_RTOL = 1e-9
#: rows of one batched call into the module
DEFAULT_BATCH_ROWS = 256


# --------------------------------------------------------------------------- noise levels
@dataclass(frozen=True)
class NoiseLevels:
    """The network's noise levels: ``signal`` (``vp``: ``a_m^2 + D_m = 1``, as ``ou`` with
    ``a_m = exp(-t)``; ``ve``: ``a_m = 1``), the time input ``time_input`` (see the module
    docstring), the trained range ``tau_range`` and, for ``timestep``, the ``log tau`` of each
    training timestep."""

    signal: str
    time_input: str
    tau_range: tuple[float, float]
    log_tau_steps: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_choice("signal", self.signal, SIGNALS)
        require_choice("time_input", self.time_input, TIME_INPUTS)
        low, high = self.tau_range
        if not 0 < low <= high < math.inf:
            raise ParameterError("tau_range", self.tau_range, "0 < low <= high < inf")

    @classmethod
    def from_alphas_cumprod(cls, alphas_cumprod, time_input: str = "timestep") -> NoiseLevels:
        """Levels of a discrete schedule ``abar_k`` (``k = 0..T-1``); timesteps whose ``tau`` is
        0 or infinite (``abar = 1`` or ``0``, zero terminal SNR) are outside the range."""
        abar = np.asarray(alphas_cumprod, dtype=float).ravel()
        if abar.size < 2 or not np.all((abar >= 0) & (abar <= 1)):
            raise ParameterError("alphas_cumprod", abar[:4], "at least 2 values in [0, 1]")
        with np.errstate(divide="ignore"):
            log_tau = np.log1p(-abar) - np.log(abar)
        finite = np.isfinite(log_tau)
        if finite.sum() < 2 or np.any(np.diff(log_tau[finite]) <= 0):
            raise ParameterError("alphas_cumprod", abar[:4], "a strictly decreasing schedule")
        low, high = np.exp(log_tau[finite][[0, -1]])
        return cls("vp", time_input, (float(low), float(high)), log_tau)

    def contains(self, tau: float) -> bool:
        low, high = self.tau_range
        return low * (1 - RANGE_RTOL) <= tau <= high * (1 + RANGE_RTOL)

    def signal_scale(self, tau: float) -> float:
        """``a_m`` at ``tau``."""
        return 1.0 / math.sqrt(1.0 + tau) if self.signal == "vp" else 1.0

    def model_time(self, tau: float) -> float:
        """The time input ``t_m`` at ``tau``."""
        if self.time_input == "timestep":
            finite = np.isfinite(self.log_tau_steps)
            steps = np.arange(self.log_tau_steps.size, dtype=float)[finite]
            t = float(np.interp(math.log(tau), self.log_tau_steps[finite], steps))
            return float(round(t)) if abs(t - round(t)) <= 1e-9 else t
        inputs = {"log-sigma": 0.125 * math.log(tau), "edm": 0.125 * math.log(tau),
                  "sigma": math.sqrt(tau), "tau": tau, "ou": 0.5 * math.log1p(tau)}
        return float(inputs[self.time_input])

    def describe(self) -> dict:
        return {"signal": self.signal, "time_input": self.time_input,
                "tau_range": [float(v) for v in self.tau_range],
                "training_timesteps": None if self.log_tau_steps is None
                else int(self.log_tau_steps.size)}


@dataclass(frozen=True)
class NetworkLevel:
    """One library level ``(a, D)`` seen by the network: ``tau``, the network's ``a_m``,
    ``D_m = a_m^2 tau``, the scale ``c = a_m / a`` and the time input ``t_m``."""

    a: float
    D: float
    tau: float
    a_m: float
    D_m: float
    scale: float
    model_time: float


# --------------------------------------------------------------------------- predictions
@dataclass(frozen=True)
class Prediction:
    """What the network predicts (:data:`PREDICTIONS`); ``data_std`` is EDM's ``sigma_data``."""

    kind: str
    data_std: float | None = None

    def __post_init__(self) -> None:
        require_choice("prediction", self.kind, PREDICTIONS)
        if self.kind.startswith("edm"):
            require_positive("sigma_data", self.data_std)

    def input_scale(self, level: NetworkLevel) -> float:
        """Factor on ``x_m`` before the module (EDM's ``c_in``; 1 otherwise)."""
        if self.kind.startswith("edm"):
            return 1.0 / math.sqrt(level.D_m + self.data_std**2)
        return 1.0

    def score(self, output, x_m, x, level: NetworkLevel):
        """The library's score ``s(x; a, D)`` from the module's ``output`` at ``x_m = c x``."""
        a, D = level.a, level.D
        if self.kind == "epsilon":
            return -output / math.sqrt(D)
        if self.kind == "score":
            return level.scale * output
        return (a * self.clean_estimate(output, x_m, level) - x) / D

    def clean_estimate(self, output, x_m, level: NetworkLevel):
        """``E[y | x]`` from an x0, v or EDM output (see the module docstring)."""
        if self.kind == "x0":
            return output
        if self.kind == "v":
            root = math.sqrt(level.D_m)
            return (level.a_m * x_m - root * output) / (level.a_m**2 + level.D_m)
        variance = level.D_m + self.data_std**2
        skip = self.data_std**2 / variance
        out = math.sqrt(level.D_m) * self.data_std / math.sqrt(variance)
        return skip * x_m + (out if self.kind == "edm-epsilon" else -out) * output

    def describe(self) -> dict:
        return {"prediction": self.kind,
                **({"sigma_data": self.data_std} if self.data_std is not None else {})}


# --------------------------------------------------------------------------- forward mode
def _contiguous_inputs(module, args):
    return tuple(arg.contiguous() if hasattr(arg, "contiguous") else arg for arg in args)


@contextlib.contextmanager
def forward_mode_ready(module):
    """Run ``torch.func.jvp`` through ``module``: the math kernel of scaled-dot-product
    attention and contiguous inputs to normalization layers while the context is open."""
    torch = require_torch()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    handles = [m.register_forward_pre_hook(_contiguous_inputs) for m in module.modules()
               if isinstance(m, norms)]
    try:
        with sdpa_kernel(SDPBackend.MATH), warnings.catch_warnings():
            # torch scripts its forward-mode decompositions (group norm) with a deprecated call
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated",
                                    category=DeprecationWarning)
            yield
    finally:
        for handle in handles:
            handle.remove()


def module_output(output):
    """The tensor of a module's output: ``.sample``, the first entry of a tuple, or itself."""
    if hasattr(output, "sample"):
        return output.sample
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return output


# --------------------------------------------------------------------------- the field
class NetworkScore:
    """A torch module of one of :data:`PREDICTIONS` at its :class:`NoiseLevels`, seen as a score
    field in the library's convention (see the module docstring).

    Parameters
    ----------
    module : ``module(x_m, t_m)``; put in eval mode, its parameters frozen, cast to ``dtype``.
    prediction : a :class:`Prediction` or its kind.
    levels : the network's :class:`NoiseLevels`.
    sample_shape : the shape of one input (``(C, H, W)`` for images); ``dim`` is its size.
    dtype : ``"float32"`` (default) or ``"float64"``; device : ``"cpu"``, ``"gpu"``, ``"auto"``.
    name : how errors name the network (``--diffusers DIR``); batch_rows : rows per call.
    """

    jacobian_route = "autograd"

    def __init__(self, module, prediction, levels: NoiseLevels, sample_shape, *,
                 dtype: str = "float32", device: str = "cpu", name: str = "network",
                 batch_rows: int = DEFAULT_BATCH_ROWS):
        self.torch = require_torch()
        self.name = name
        self.prediction = prediction if isinstance(prediction, Prediction) else Prediction(
            prediction)
        if not isinstance(levels, NoiseLevels):
            raise ParameterError("levels", levels, "a NoiseLevels")
        self.levels = levels
        shape = tuple(int(s) for s in np.atleast_1d(sample_shape))
        if not shape or min(shape) < 1:
            raise ParameterError(f"{name} sample shape", shape, "positive sizes")
        self.sample_shape = shape
        self.dim = int(np.prod(shape))
        self.dtype = getattr(self.torch, require_choice("dtype", dtype, ("float32", "float64")))
        self.device = torch_device(device)
        self.batch_rows = require_int("batch_rows", batch_rows, minimum=1)
        if not isinstance(module, self.torch.nn.Module):
            raise ParameterError(name, type(module).__name__, "a torch.nn.Module")
        tensors = list(module.parameters()) + list(module.buffers())
        if any(t.dtype != self.dtype or t.device != self.device for t in tensors
               if t.is_floating_point()):
            module = module.to(device=self.device, dtype=self.dtype)
        module = module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
        self.module = module

    # ---------------------------------------------------------------- levels
    def level(self, a: float, D: float) -> NetworkLevel:
        """The network's view of the level ``(a, D)``; outside its trained range an error."""
        a, D = checked_level(a, D)
        tau = D / (a * a)
        if not self.levels.contains(tau):
            low, high = self.levels.tau_range
            raise ParameterError(f"{self.name} noise level tau", tau,
                                 f"in [{low:.6g}, {high:.6g}], the range the network was "
                                 "trained on (its scheduler's)")
        a_m = self.levels.signal_scale(tau)
        return NetworkLevel(a, D, tau, a_m, a_m * a_m * tau, a_m / a,
                            self.levels.model_time(tau))

    def model_time(self, a: float, D: float) -> float:
        return self.level(a, D).model_time

    def describe(self) -> dict:
        return {**self.prediction.describe(), "noise_levels": self.levels.describe(),
                "sample_shape": list(self.sample_shape), "dtype": str(self.dtype).split(".")[-1],
                "device": str(self.device)}

    # ---------------------------------------------------------------- torch
    def torch_score(self, x, level: NetworkLevel):
        """Differentiable score of the ``(n, dim)`` tensor ``x`` at ``level``, in the tensor's
        dtype and device (float64 inputs are cast to the module's dtype and back)."""
        torch = self.torch
        x_in = x.to(self.dtype)
        x_m = level.scale * x_in
        times = torch.full((x.shape[0],), level.model_time, dtype=self.dtype, device=x.device)
        inputs = (self.prediction.input_scale(level) * x_m).reshape(x.shape[0],
                                                                     *self.sample_shape)
        output = module_output(self.module(inputs, times))
        if not torch.is_tensor(output) or tuple(output.shape) != tuple(inputs.shape):
            shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise ParameterError(f"{self.name} output shape", shape,
                                 f"{tuple(inputs.shape)}, the shape of its input")
        output = output.reshape(x.shape[0], self.dim)
        return self.prediction.score(output, x_m, x_in, level).to(x.dtype)

    def _tensor(self, x: np.ndarray):
        return self.torch.as_tensor(x, dtype=self.torch.float64, device=self.device)

    def _chunks(self, rows: int):
        for start in range(0, rows, self.batch_rows):
            yield slice(start, min(rows, start + self.batch_rows))

    # ---------------------------------------------------------------- score field
    def score(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        x = checked_points(x, self.dim)
        level = self.level(a, D)
        tensor = self._tensor(x)
        parts = []
        with self.torch.no_grad():
            for rows in self._chunks(x.shape[0]):
                out = call_user_code(self.name, self.torch_score, tensor[rows], level,
                                     where=f"at tau = {level.tau:.6g}")
                parts.append(out.detach().cpu().numpy())
        return checked_output(self.name, np.concatenate(parts), x.shape,
                              f"at tau = {level.tau:.6g}")

    def jacobian(self, x: np.ndarray, a: float, D: float) -> np.ndarray:
        """``(n, dim, dim)`` dense Jacobian by reverse mode: row ``i`` of ``J_p`` is the
        vector-Jacobian product of point ``p`` with the unit vector ``e_i``, batched over
        ``batch_rows`` (point, row) pairs. For small ``dim``; larger ones go matrix-free."""
        x = checked_points(x, self.dim)
        level = self.level(a, D)
        torch, d, n = self.torch, self.dim, x.shape[0]
        tensor, eye = self._tensor(x), torch.eye(d, dtype=torch.float64, device=self.device)
        jac = np.empty((n * d, d))

        def rows_of(block):
            points, units = tensor[block // d], eye[block % d]
            _, pullback = torch.func.vjp(lambda inp: self.torch_score(inp, level), points)
            return pullback(units)[0]

        for rows in self._chunks(n * d):
            block = torch.arange(rows.start, rows.stop, device=self.device)
            jac[rows] = call_user_code(self.name, rows_of, block,
                                       where=f"at tau = {level.tau:.6g}").cpu().numpy()
        return checked_output(f"{self.name} Jacobian", jac.reshape(n, d, d), (n, d, d),
                              f"at tau = {level.tau:.6g}")
