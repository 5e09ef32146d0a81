"""Torch adapter and trained score network (optional extra; skipped without torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from diffphase.errors import ParameterError
from diffphase.process import get_process
from diffphase.simulate.jacobians import jacobian


def test_importing_diffphase_never_imports_torch():
    code = ("import sys, diffphase, diffphase.cli, diffphase.simulate.fields, "
            "diffphase.simulate.torch_adapter; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


torch = pytest.importorskip("torch")


def test_autograd_jacobian_of_a_linear_torch_field_is_its_matrix():
    from diffphase.simulate.torch_adapter import TorchScore

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((5, 5))
    weight = torch.tensor(matrix)
    field = TorchScore(lambda x, a, D: (x @ weight.T) * D, 5)
    jac = jacobian(field, rng.standard_normal((3, 5)), 1.0, 0.5)
    np.testing.assert_allclose(jac, np.broadcast_to(0.5 * matrix, (3, 5, 5)), rtol=1e-14)


def test_network_of_a_process_time_goes_through_the_time_adapter():
    """A torch network of ou time, ``s_t(x) = -x / (a_t^2 v + D_t)`` (Gaussian data of variance
    ``v``), wrapped by TimeScore: on ou's own levels it is called at ``t``; at any other level
    ``(a, D)`` the autograd Jacobian is the exact ``-1 / (a^2 v + D)`` (the map rescales by
    ``c = a_t / a``, which autograd sees)."""
    from diffphase.simulate.jacobians import TimeScore
    from diffphase.simulate.torch_adapter import TorchScore

    ou, v, seen = get_process("ou"), 2.0, []

    def network(x, t):
        seen.append(t)
        a_t, noise = float(np.exp(-t)), float(-np.expm1(-2 * t))
        return -x / (a_t**2 * v + noise)

    field = TorchScore(TimeScore(network, ou), 3)
    x = np.random.default_rng(3).standard_normal((2, 3))
    jac = jacobian(field, x, float(ou.signal_scale(0.7)), float(ou.noise_variance(0.7)))
    np.testing.assert_allclose(seen[-1], 0.7, rtol=1e-14)
    np.testing.assert_allclose(jac[0], -np.eye(3) / (np.exp(-1.4) * v - np.expm1(-1.4)),
                               rtol=1e-12)
    for a, D in ((1.0, 0.3), (0.5, 2.0)):
        np.testing.assert_allclose(jacobian(field, x, a, D)[1], -np.eye(3) / (a * a * v + D),
                                   rtol=1e-12)
        np.testing.assert_allclose(field.score(x, a, D), -x / (a * a * v + D), rtol=1e-12)


def test_autograd_matches_central_differences_on_a_nonlinear_network():
    from diffphase.simulate.networks import DenoiserMLP, network_score

    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    field = network_score(DenoiserMLP(4, width=16, depth=2))
    x = rng.standard_normal((3, 4))
    ou = get_process("ou")
    a, D = float(ou.signal_scale(0.3)), float(ou.noise_variance(0.3))
    auto = jacobian(field, x, a, D)
    central = jacobian(field, x, a, D, route="central", rng=rng)
    np.testing.assert_allclose(auto, central, atol=1e-7 * np.abs(auto).max())


def test_torch_score_output_is_checked():
    from diffphase.simulate.torch_adapter import TorchScore

    field = TorchScore(lambda x, a, D: x[:, :2], 4, name="net")
    with pytest.raises(ParameterError, match="net output shape"):
        field.score(np.zeros((3, 4)), 1.0, 1.0)


def test_short_training_reduces_the_loss_and_learns_the_normal_directions():
    from diffphase.data.laws import LinearGaussian
    from diffphase.simulate.networks import TrainingConfig, network_score, train_denoiser

    data = LinearGaussian.manifold((0.5,), (1.0,), 4, subspace="orthonormal",
                                   rng=np.random.default_rng(2))
    config = TrainingConfig(width=64, depth=2, steps=1500, batch=256, seed=3)
    net, losses = train_denoiser(data.sample, 4, config)
    # the weighted loss has a floor near 3 here (posterior variance / c_out^2), so only ask for
    # a decrease; the Jacobian below is the real test
    assert losses[-1] < losses[0]
    field = network_score(net)
    tau = 0.05
    x = data.sample(16, np.random.default_rng(4)) + np.sqrt(tau) * np.random.default_rng(5).normal(
        size=(16, 4))
    jn = tau * jacobian(field, x, 1.0, tau)
    # normal directions (coordinates 2, 3: zero data variance): exact value -1 (THEORY A)
    normal = np.einsum("nii->ni", jn)[:, 2:]
    assert np.abs(normal + 1).mean() < 0.15


# --------------------------------------------------------------------------- networks, CLI
def _run_cli(argv, capsys):
    from diffphase.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def tiny_diffusers(tmp_path_factory):
    """A randomly initialised 16 x 16, one-channel UNet2DModel (block widths 8 and 16) and the
    default DDPM scheduler, saved with save_pretrained (no download)."""
    diffusers = pytest.importorskip("diffusers")
    folder = tmp_path_factory.mktemp("tiny_diffusers")
    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=4,
        attention_head_dim=8).save_pretrained(folder)
    diffusers.DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder)
    return folder


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "torch_factories.py").write_text(
        "import numpy as np, torch\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.layer = torch.nn.Linear(5, 4)\n"
        "    def forward(self, x, t):\n"
        "        return self.layer(torch.cat([x, t[:, None] / 1000], dim=1))\n"
        "def good():\n"
        "    torch.manual_seed(0)\n"
        "    return Net(), {'prediction': 'epsilon', 'time': 'timestep', 'shape': (4,),\n"
        "                   'betas': np.linspace(1e-4, 0.02, 1000)}\n"
        "def raises():\n"
        "    raise RuntimeError('cannot build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "torch_factories"
    sys.modules.pop("torch_factories", None)


@pytest.mark.usefixtures("one_torch_thread")
def test_diagnose_diffusers_matrix_free_end_to_end(tiny_diffusers, tmp_path, capsys,
                                                    monkeypatch):
    from diffphase.commands import fields as command

    monkeypatch.setattr(command, "progress_enabled", lambda: True)  # as on a terminal
    out = tmp_path / "out"
    code, stdout, err = _run_cli(
        ["diagnose", "--diffusers", str(tiny_diffusers), "--process", "ddpm", "--times", "100",
         "--points", "1", "--spectra", "matrix-free", "--krylov-steps", "6",
         "--krylov-probes", "2", "--hutchinson-probes", "2", "--top-k", "2", "--out", str(out),
         "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    point = summary["time_points"][0]
    # diffphase's ddpm step k is diffusers' timestep k - 1 of the same linear schedule
    assert point["model_time"] == pytest.approx(99.0, abs=1e-3)  # float32 alphas_cumprod
    assert summary["network"]["prediction"] == "epsilon"
    assert {"singular_values_top", "singular_values_top_error", "eigenvalues_top",
            "local_dimension_error", "nonconservativeness_error", "ks_error"} <= set(point)
    assert 0 < point["nonconservativeness"] <= 1 and len(point["singular_values_top"]) == 2
    assert summary["solver"]["spectra"] == "matrix-free"
    # the memory is stated before the run (on a terminal's stderr) and kept in the JSON
    estimated = summary["solver"]["estimated_memory_bytes"]
    assert 0 < estimated < 2**30 and err.startswith("estimated peak memory")
    names = {p.name for p in out.iterdir()}
    assert {"fields_diagnose.csv", "fields_diagnose_summary.csv", "fields_diagnose_density.csv",
            "fields_diagnose.json", "fields_diagnose.png"} <= names
    header = (out / "fields_diagnose.csv").read_text().splitlines()[0]
    assert header.startswith("step_ddpm,tau,end,index,singular_value_normalized")


@pytest.mark.usefixtures("one_torch_thread")
def test_diagnose_torch_factory_dense_with_training_data(factories, tmp_path, capsys):
    rows = np.random.default_rng(0).standard_normal((30, 2)) @ np.ones((2, 4))
    np.save(tmp_path / "rows.npy", rows)
    out = tmp_path / "out"
    code, stdout, err = _run_cli(
        ["diagnose", "--torch", f"{factories}:good", "--times", "0.2,1", "--points", "3",
         "--steps-per-efold", "4", "--data", str(tmp_path / "rows.npy"), "--dtype", "float64",
         "--out", str(out), "--json"], capsys)
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["solver"]["spectra"] == "dense" and summary["parameters"]["dim"] == 4
    comparison = summary["comparison"]
    assert comparison["data_rank"] == 1  # the rows span one direction (the ones vector)
    for entry in comparison["time_points"]:
        # THEORY A: the one data direction counts while its variance exceeds tau
        assert entry["gaussian"]["local_dimension"] == 1 and entry["theory_readout"] == 1
    names = {p.name for p in out.iterdir()}
    assert {"fields_diagnose_theory.csv", "fields_diagnose_theory.png"} <= names
    table = (out / "fields_diagnose_theory.csv").read_text().splitlines()
    assert table[0].startswith("t_ve,tau,source,local_dimension") and len(table) == 1 + 2 * 4


@pytest.mark.parametrize("case, option", [
    ("missing", "--diffusers"), ("empty", "--diffusers"), ("raises", "--torch"),
    ("dim", "--dim"), ("range", "--times"), ("memory", "memory budget")])
def test_bad_network_input_is_one_line_naming_the_option(case, option, factories, tmp_path,
                                                         capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "scheduler_config.json").write_text('{"_class_name": "DDPMScheduler"}')
    argv = {"missing": ["--diffusers", str(tmp_path / "nowhere")],
            "empty": ["--diffusers", str(empty)],
            "raises": ["--torch", f"{factories}:raises"],
            "dim": ["--torch", f"{factories}:good", "--dim", "4"],
            "range": ["--torch", f"{factories}:good", "--times", "1e-7"],
            "memory": ["--torch", f"{factories}:good", "--spectra", "matrix-free",
                       "--krylov-steps", "2000", "--max-memory", "1M"]}[case]
    code, stdout, err = _run_cli(["diagnose", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and stdout == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and option in lines[0], err
    assert not (tmp_path / "out").exists()
