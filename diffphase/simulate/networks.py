"""A small score network trained on linear-manifold data (optional ``torch`` extra; THEORY E, A).

Contract. :class:`DenoiserMLP` predicts the clean datum ``E[y | u]`` from ``u = y + sqrt(tau) z``
(every process is variance exploding in ``u = x / a_t`` and ``tau = D_t / a_t^2``), with the
usual noise-level preconditioning (``sigma`` the data scale):

    den(u, tau) = c_skip u + c_out F(c_in u, log tau),
    c_skip = sigma^2 / (tau + sigma^2),  c_out = sigma sqrt(tau / (tau + sigma^2)),
    c_in = 1 / sqrt(tau + sigma^2),

and the score at any noise level follows from Tweedie,
``s(x; a, D) = (a den(x / a, D / a^2) - x) / D`` (:func:`network_score`, in the library's
convention ``score(x, a, D)`` of :mod:`diffphase.simulate.jacobians`: no process needed).
:func:`train_denoiser` minimizes the denoising loss ``E |den(u, tau) - y|^2 / c_out^2`` with
fresh data every step (the population, not a finite training set, so the target is the exact
score) and ``tau`` log-uniform in ``[tau_min, tau_max]``. :func:`trained_linear_manifold_network`
trains (or loads from the kernel cache) the network used by the registered checks and
``examples/train_score_network.py``.

The network is an unconstrained MLP: nothing forces its Jacobian to be symmetric, so its
non-conservativeness is a measured property, not a design choice.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..data.laws import LinearGaussian
from ..errors import require_int, require_positive
from .torch_adapter import TorchScore, require_torch

torch = require_torch()
nn = torch.nn


class DenoiserMLP(nn.Module):
    """Preconditioned MLP denoiser ``den(u, tau)`` (see the module docstring)."""

    def __init__(self, dim: int, width: int = 128, depth: int = 3, data_std: float = 1.0,
                 frequencies: int = 8):
        super().__init__()
        self.dim = require_int("dim", dim, minimum=1)
        self.data_std = require_positive("data_std", data_std)
        self.register_buffer("frequencies", torch.arange(1, frequencies + 1, dtype=torch.float32))
        layers: list[nn.Module] = []
        width_in = dim + 2 * frequencies + 1
        for _ in range(require_int("depth", depth, minimum=1)):
            layers += [nn.Linear(width_in, width), nn.SiLU()]
            width_in = width
        layers.append(nn.Linear(width_in, dim))
        self.body = nn.Sequential(*layers)

    def noise_embedding(self, tau):
        """Fourier features of ``log(tau) / 8`` (``tau`` in ``[3e-4, 3e3]`` maps to ``[-1, 1]``)."""
        level = torch.log(tau)[:, None] / 8.0
        angles = math.pi * level * self.frequencies.to(level.dtype)
        return torch.cat([level, torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, u, tau):
        s2 = self.data_std ** 2
        tau = tau.expand(u.shape[0]) if tau.ndim == 0 else tau
        c_in = 1.0 / torch.sqrt(tau + s2)
        c_skip = s2 / (tau + s2)
        c_out = self.data_std * torch.sqrt(tau / (tau + s2))
        features = torch.cat([c_in[:, None] * u, self.noise_embedding(tau)], dim=1)
        return c_skip[:, None] * u + c_out[:, None] * self.body(features)


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters of :func:`train_denoiser` (defaults train in about a minute on 2 cores)."""

    width: int = 128
    depth: int = 3
    steps: int = 4000
    batch: int = 512
    learning_rate: float = 2e-3
    tau_min: float = 1e-3
    tau_max: float = 1e3
    seed: int = 0
    threads: int = 2


def train_denoiser(sampler: Callable[[int, np.random.Generator], np.ndarray], dim: int,
                   config: TrainingConfig = TrainingConfig(), data_std: float | None = None,
                   progress: Callable[[int, float], None] | None = None):
    """Train a :class:`DenoiserMLP` on fresh samples ``sampler(n, rng)``; return ``(net, losses)``.

    ``losses`` is the running mean of the weighted denoising loss every 100 steps.
    """
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, config.threads))
    if data_std is None:
        data_std = float(np.sqrt(np.mean(np.square(sampler(4096, rng)))))
    net = DenoiserMLP(dim, config.width, config.depth, data_std)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    log_lo, log_hi = math.log(config.tau_min), math.log(config.tau_max)
    losses, running = [], 0.0
    try:
        for step in range(1, config.steps + 1):
            y = torch.as_tensor(sampler(config.batch, rng), dtype=torch.float32)
            tau = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(config.batch))
            u = y + torch.sqrt(tau)[:, None] * torch.randn_like(y)
            c_out2 = data_std ** 2 * tau / (tau + data_std ** 2)
            loss = (((net(u, tau) - y) ** 2).sum(dim=1) / c_out2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += float(loss.detach())
            if step % 100 == 0:
                losses.append(running / 100)
                running = 0.0
                if progress:
                    progress(step, losses[-1])
    finally:
        torch.set_num_threads(previous_threads)
    net.eval()
    return net, losses


def network_score(net: DenoiserMLP, dtype: str = "float64") -> TorchScore:
    """The trained denoiser as a score field: ``s(x; a, D) = (a den(x/a, D/a^2) - x) / D``."""
    net = net.double() if dtype == "float64" else net.float()

    def score(x, a: float, D: float):
        tau = torch.tensor(D / (a * a), dtype=x.dtype)
        return (a * net(x / a, tau) - x) / D

    return TorchScore(score, net.dim, dtype=dtype, name="trained score network")


#: the linear-manifold data of the registered checks and the example script
DEFAULT_MANIFOLD = {"dim": 12, "fractions": (2 / 12, 3 / 12), "variances": (4.0, 0.25),
                    "subspace": "orthonormal", "seed": 7}


def trained_linear_manifold_network(manifold: dict | None = None,
                                    config: TrainingConfig = TrainingConfig(),
                                    use_cache: bool = True,
                                    progress: Callable[[int, float], None] | None = None):
    """Train (or load from the kernel cache) the network for a linear manifold.

    Returns ``(net, data, losses)``; ``data`` is the linear-manifold data (``F``, ...). The cache
    key hashes the manifold parameters, the training configuration and the torch version.
    """
    spec = dict(DEFAULT_MANIFOLD if manifold is None else manifold)
    data = LinearGaussian.manifold(spec["fractions"], spec["variances"], spec["dim"],
                                   subspace=spec["subspace"],
                                   rng=np.random.default_rng(spec["seed"]))
    data_digest = hashlib.sha256(np.ascontiguousarray(data.F).tobytes()
                                 + np.asarray(data.latent_variances, float).tobytes()).hexdigest()
    key = json.dumps({"manifold": spec, "data": data_digest, "config": asdict(config),
                      "torch": torch.__version__, "version": 1}, sort_keys=True, default=list)
    path = None
    if use_cache:
        from ..solvers.codegen import cache_dir

        path = cache_dir() / f"score_network_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
        if path.exists():
            stored = torch.load(path, weights_only=False)
            net = DenoiserMLP(spec["dim"], config.width, config.depth, stored["data_std"])
            net.load_state_dict(stored["state"])
            net.eval()
            return net, data, stored["losses"]
    net, losses = train_denoiser(data.sample, spec["dim"], config, progress=progress)
    if path is not None:
        tmp = path.with_suffix(".tmp")
        torch.save({"state": net.state_dict(), "data_std": net.data_std, "losses": losses}, tmp)
        tmp.replace(path)
    return net, data, losses
