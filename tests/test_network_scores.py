"""Networks as score fields: scheduler noise levels and prediction conversions (THEORY 0, E).

Every expectation comes from an independent route: the scheduler's own ``add_noise``,
``timesteps`` and EDM preconditioning functions, or the closed-form score of Gaussian data
``-(a^2 C + D I)^{-1} x`` in a convention other than the network's."""

from __future__ import annotations

import numpy as np
import pytest

from diffphase.errors import ParameterError
from diffphase.simulate.jacobians import UserCodeError

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from diffphase.simulate.network_loaders import (  # noqa: E402
    load_diffusers,
    network_from_spec,
    scheduler_convention,
)
from diffphase.simulate.network_scores import NetworkScore, NoiseLevels, Prediction  # noqa: E402


def tiny_unet():
    """The randomly initialised 16 x 16, one-channel UNet2DModel of block widths 8 and 16."""
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4, attention_head_dim=8)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs its small products on one torch thread."""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_unet")
    tiny_unet().save_pretrained(folder)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- noise levels
def _level_of(scheduler, timestep) -> tuple[float, float]:
    """``(a, D)`` read off the scheduler's own ``add_noise`` at one timestep."""
    ones, zeros = torch.ones(1, 1, 1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, 1,
                                                                          dtype=torch.float64)
    step = torch.tensor([timestep])
    a = float(scheduler.add_noise(ones, zeros, step))
    return a, float(scheduler.add_noise(zeros, ones, step)) ** 2


def test_diffusers_folder_levels_match_the_schedulers_add_noise(tiny_folder):
    field = load_diffusers(tiny_folder)
    scheduler = diffusers.DDPMScheduler.from_pretrained(tiny_folder)
    assert field.dim == 256 and field.sample_shape == (1, 16, 16)
    assert field.prediction.kind == "epsilon"
    for k in (0, 1, 17, 500, 998, 999):
        a, D = _level_of(scheduler, k)
        level = field.level(a, D)
        assert level.model_time == k
        np.testing.assert_allclose([level.a_m, level.D_m, level.scale], [a, D, 1.0], rtol=1e-12)
        # the same noise-to-signal ratio in the variance-exploding convention: same timestep
        assert field.level(1.0, D / a**2).model_time == k


def test_karras_sigmas_map_to_the_schedulers_own_fractional_timesteps():
    scheduler = diffusers.EulerDiscreteScheduler(use_karras_sigmas=True)
    scheduler.set_timesteps(12)
    levels, prediction = scheduler_convention(scheduler)
    assert prediction.kind == "epsilon" and levels.time_input == "timestep"
    sigmas = scheduler.sigmas[:-1].double().numpy()
    ours = [levels.model_time(float(s) ** 2) for s in sigmas]
    np.testing.assert_allclose(ours, scheduler.timesteps.double().numpy(), rtol=1e-5, atol=1e-3)
    assert len(set(np.round(ours, 6))) == 12 and not np.allclose(ours, np.round(ours))


def test_variance_exploding_sigmas_are_the_time_input():
    scheduler = diffusers.ScoreSdeVeScheduler(sigma_min=0.01, sigma_max=50.0)
    scheduler.set_sigmas(20)
    levels, prediction = scheduler_convention(scheduler)
    assert prediction.kind == "score" and levels.signal == "ve"
    for k in (0, 7, 19):
        a, D = _level_of(scheduler, k)
        assert a == 1.0
        np.testing.assert_allclose(levels.model_time(D), float(scheduler.discrete_sigmas[k]),
                                   rtol=1e-6)
    np.testing.assert_allclose(levels.tau_range, (1e-4, 2500.0), rtol=1e-12)


def test_edm_preconditioning_matches_the_schedulers_functions():
    scheduler = diffusers.EDMEulerScheduler(sigma_data=0.5, prediction_type="v_prediction")
    levels, prediction = scheduler_convention(scheduler)
    field = NetworkScore(Echo(), prediction, levels, (3,), dtype="float64")
    x = torch.tensor([[0.3, -1.2, 2.0]], dtype=torch.float64)
    output = torch.tensor([[0.7, 0.1, -0.4]], dtype=torch.float64)
    for sigma in (0.01, 0.7, 35.0):
        level = field.level(1.0, sigma**2)
        sig = torch.tensor(sigma, dtype=torch.float64)
        np.testing.assert_allclose(level.model_time,
                                   float(scheduler.precondition_noise(sig)), rtol=1e-12)
        np.testing.assert_allclose(prediction.input_scale(level) * x,
                                   scheduler.precondition_inputs(x, sig), rtol=1e-12)
        np.testing.assert_allclose(prediction.clean_estimate(output, x, level),
                                   scheduler.precondition_outputs(x, output, sig), rtol=1e-12)


def test_levels_outside_the_trained_range_are_refused(tiny_folder):
    field = load_diffusers(tiny_folder)
    with pytest.raises(ParameterError, match="trained on"):
        field.level(1.0, 1e-6)
    with pytest.raises(ParameterError, match="alphas_cumprod"):
        NoiseLevels.from_alphas_cumprod([0.5, 0.9])


# --------------------------------------------------------------------------- predictions
class GaussianDenoiser(torch.nn.Module):
    """The exact posterior of Gaussian data ``N(0, C)`` at the DDPM timesteps of ``abar``: it
    predicts epsilon, v, x0 or the score of ``x_t = sqrt(abar_t) y + sqrt(1 - abar_t) z``."""

    def __init__(self, covariance: np.ndarray, abar: np.ndarray, kind: str):
        super().__init__()
        self.register_buffer("covariance", torch.as_tensor(covariance))
        self.register_buffer("abar", torch.as_tensor(abar))
        self.kind = kind

    def forward(self, x, t):
        flat = x.reshape(x.shape[0], -1)
        abar = self.abar[t.round().long()][:, None, None]
        a, D = torch.sqrt(abar), 1.0 - abar
        eye = torch.eye(flat.shape[1], dtype=flat.dtype)
        precision = torch.linalg.inv(abar * self.covariance + D * eye)
        posterior = torch.einsum("nij,nj->ni", precision, flat)
        eps = torch.sqrt(D[:, :, 0]) * posterior
        clean = a[:, :, 0] * posterior @ self.covariance
        out = {"epsilon": eps, "x0": clean, "score": -posterior,
               "v": a[:, :, 0] * eps - torch.sqrt(D[:, :, 0]) * clean}[self.kind]
        return out.reshape(x.shape)


def gaussian_case(kind: str, d: int = 16):
    rng = np.random.default_rng(4)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    variances = np.geomspace(0.05, 20.0, d)
    covariance = (q * variances) @ q.T
    abar = np.cumprod(1.0 - np.linspace(1e-4, 0.02, 1000))
    module = GaussianDenoiser(covariance, abar, kind).double()
    levels = NoiseLevels.from_alphas_cumprod(abar)
    return NetworkScore(module, kind, levels, (1, 4, 4), dtype="float64"), covariance, abar


@pytest.mark.parametrize("kind", ["epsilon", "v", "x0", "score"])
def test_every_prediction_gives_the_exact_gaussian_score_in_other_conventions(kind):
    field, covariance, abar = gaussian_case(kind)
    x = np.random.default_rng(5).standard_normal((3, 16))
    for k in (3, 250, 900):
        tau = (1.0 - abar[k]) / abar[k]
        for a in (1.0, 0.3):  # ve, and a scale unlike the network's own sqrt(abar)
            D = a * a * tau
            exact = -np.linalg.inv(a * a * covariance + D * np.eye(16))
            np.testing.assert_allclose(field.score(x, a, D), x @ exact.T, rtol=1e-10,
                                       atol=1e-12 * np.abs(exact).max())
            np.testing.assert_allclose(field.jacobian(x[:1], a, D)[0], exact, rtol=1e-9,
                                       atol=1e-12 * np.abs(exact).max())


def test_the_conversion_is_not_the_identity_for_a_wrong_declaration():
    field, covariance, abar = gaussian_case("epsilon")
    wrong = NetworkScore(field.module, "x0", field.levels, (1, 4, 4), dtype="float64")
    tau = (1.0 - abar[100]) / abar[100]
    x = np.ones((1, 16))
    exact = -np.linalg.solve(covariance + tau * np.eye(16), x[0])
    assert np.abs(wrong.score(x, 1.0, tau)[0] - exact).max() > 0.1 * np.abs(exact).max()


# --------------------------------------------------------------------------- factories
class Echo(torch.nn.Module):
    """Returns its input: as an x0 predictor, the score of a point mass at the input."""

    def forward(self, x, t):
        return x


def test_factory_specs_are_checked_and_named():
    module = Echo()
    field = network_from_spec((module, {"prediction": "x0", "time": "sigma", "shape": (4,),
                                        "tau_range": (0.01, 100.0)}), "--torch m:f")
    assert field.levels.time_input == "sigma" and field.dim == 4
    x = np.ones((2, 4))
    np.testing.assert_allclose(field.score(x, 1.0, 0.5), (x - x) / 0.5)
    for spec, message in [((module, {"prediction": "eps", "time": "tau", "shape": (4,)}),
                           "--torch m:f prediction"),
                          ({"module": module, "prediction": "v", "shape": (4,)}, "time"),
                          ((module, {"prediction": "v", "time": "timestep", "shape": (4,)}),
                           "alphas_cumprod or betas"),
                          ((module, {"prediction": "v", "time": "tau", "colour": 1}), "info key"),
                          (module, "--torch m:f result")]:
        with pytest.raises(ParameterError, match=message):
            network_from_spec(spec, "--torch m:f")


def test_a_module_that_raises_or_returns_a_wrong_shape_is_named():
    class Broken(torch.nn.Module):
        def forward(self, x, t):
            raise RuntimeError("no luck")

    levels = NoiseLevels("ve", "tau", (0.01, 10.0))
    broken = NetworkScore(Broken(), "epsilon", levels, (4,), name="--torch m:f")
    with pytest.raises(UserCodeError, match=r"--torch m:f raised RuntimeError at tau = 1"):
        broken.score(np.ones((1, 4)), 1.0, 1.0)
    class Short(torch.nn.Module):
        def forward(self, x, t):
            return x[:, :2]

    short = NetworkScore(Short(), Prediction("x0"), levels, (4,), name="net")
    with pytest.raises(ParameterError, match="net output shape"):
        short.score(np.ones((2, 4)), 1.0, 1.0)
