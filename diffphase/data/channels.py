"""Noise channels on the tokens of random-hierarchy-model data (THEORY C, "Noise on tokens").

Contract: :func:`noisy_leaf_likelihood` noises a batch of tokens through one of
:data:`~diffphase.models.CHANNELS` and returns the leaf likelihoods ``nu(a)`` that belief
propagation takes; :func:`gaussian_tau` maps ``t/T`` of the ``linear`` ddpm schedule to ``tau``.
"""

from __future__ import annotations

import numpy as np

from ..errors import require_choice, require_in_range
from ..models import CHANNELS
from ..process import get_process

__all__ = ["CHANNELS", "gaussian_tau", "noisy_leaf_likelihood"]



def gaussian_tau(noise) -> np.ndarray:
    """Noise-to-signal ratio ``tau = (1 - abar)/abar`` at ``t/T = noise`` of the ``linear`` ddpm
    schedule (``T = 1000``); below the first step ``tau`` is linear in ``t`` from ``tau(0) = 0``."""
    process = get_process("ddpm", "linear", 1000)
    steps = np.asarray(noise, float) * process.T
    tau_first = float(process.tau_from_time(1.0))
    return np.where(steps >= 1.0, process.tau_from_time(np.clip(steps, 1.0, process.T)),
                    steps * tau_first)


def noisy_leaf_likelihood(channel: str, tokens: np.ndarray, noise: float, v: int,
                          rng: np.random.Generator) -> np.ndarray:
    """Leaf likelihoods ``nu(a)`` of shape ``tokens.shape + (v,)`` after noising ``tokens``.

    * ``eps``: ``(1 - eps)[a = x0] + eps/v`` (deterministic);
    * ``mask``: with probability ``eps`` uniform, otherwise one-hot on ``x0``;
    * ``uniform``: the token is replaced by a uniform one with probability ``eps``;
      ``nu(a) = (1 - eps)[a = observed] + eps/v``;
    * ``gaussian``: ``x = sqrt(abar) e_{x0} + sqrt(1 - abar) z``,
      ``nu = softmax(sqrt(abar) x / (1 - abar)) = softmax((e_{x0} + sqrt(tau) z)/tau)``, with
      ``noise = t/T`` of the ``linear`` schedule.
    """
    require_choice("channel", channel, CHANNELS)
    noise = require_in_range("noise", noise, 0.0, 1.0)
    tokens = np.asarray(tokens, dtype=np.int64)
    onehot = np.zeros(tokens.shape + (v,))
    np.put_along_axis(onehot, tokens[..., None], 1.0, axis=-1)
    if channel == "eps":
        return (1.0 - noise) * onehot + noise / v
    if channel == "mask":
        masked = rng.random(tokens.shape) < noise
        return np.where(masked[..., None], 1.0 / v, onehot)
    if channel == "uniform":
        replaced = rng.random(tokens.shape) < noise
        observed = np.where(replaced, rng.integers(0, v, size=tokens.shape), tokens)
        seen = np.zeros_like(onehot)
        np.put_along_axis(seen, observed[..., None], 1.0, axis=-1)
        return (1.0 - noise) * seen + noise / v
    tau = float(gaussian_tau(noise))
    if tau == 0.0:
        return onehot
    logits = (onehot + np.sqrt(tau) * rng.standard_normal(onehot.shape)) / tau
    logits -= logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)
