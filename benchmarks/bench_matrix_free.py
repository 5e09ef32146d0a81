"""Matrix-free Jacobian spectra against the full Jacobian of an image-scale network (THEORY E).

Network: a randomly initialised ``diffusers.UNet2DModel`` (block widths 16 and 32, attention in
the lower block, float32, the default DDPM schedule) on 3-channel images of 32 x 32 (``d = 3072``)
and 64 x 64 (``d = 12288``), at one point and the noise level ``tau = 0.25``.

Ours: :func:`diffphase.simulate.matrix_free_fields.matrix_free_diagnostics` (60 Krylov steps,
4 probes, 16 Hutchinson probes, top 8): the extreme singular values and eigenvalues, the
spectral CDFs, the local dimension and the non-conservativeness.
Baseline: the full Jacobian by reverse mode (``d`` vector-Jacobian products, in batches of 256)
and its dense spectra (:func:`diffphase.simulate.fields.diagnose_jacobians`: every singular value
and eigenvalue); at ``d = 12288`` the baseline stops after the singular values (a nonsymmetric
eigendecomposition of that size takes hours on two cores), so its time is a lower bound.

Each measurement runs in its own process; peak memory is the growth of the resident set
(``ru_maxrss``) over the process after setup. The row's notes give both peaks and their ratio,
and at ``d = 3072`` the largest relative difference of the top 8 singular values between the two.
No target: the issue asks for the measurement.
"""

from __future__ import annotations

import multiprocessing
import resource
import time

import numpy as np

TAU = 0.25
SIZES = {3072: 32, 12288: 64}
#: rows of one reverse pass of the baseline (a reverse pass holds about 4 MB per row at 32 x 32
#: and 22 MB at 64 x 64, where attention runs over 1024 tokens)
DENSE_BATCH_ROWS = {3072: 64, 12288: 16}


def _network(size: int):
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    from diffphase.simulate.network_loaders import scheduler_convention
    from diffphase.simulate.network_scores import NetworkScore

    torch.manual_seed(0)
    model = UNet2DModel(sample_size=size, in_channels=3, out_channels=3, layers_per_block=1,
                        block_out_channels=(16, 32),
                        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                        attention_head_dim=8)
    levels, prediction = scheduler_convention(DDPMScheduler(num_train_timesteps=1000))
    return NetworkScore(model, prediction, levels, (3, size, size), name="benchmark UNet")


def _peak_megabytes() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _measure(kind: str, dim: int, full: bool, queue) -> None:
    from diffphase.simulate.fields import diagnose_jacobians
    from diffphase.simulate.matrix_free_fields import matrix_free_diagnostics

    field = _network(SIZES[dim])
    x = np.random.default_rng(0).standard_normal((1, dim))
    a, D = 1.0 / np.sqrt(1.0 + TAU), TAU / (1.0 + TAU)
    field.score(x, a, D)  # warm up
    base = _peak_megabytes()
    start = time.perf_counter()
    if kind == "matrix-free":
        found = matrix_free_diagnostics(field, x, a, D, steps=60, probes=4,
                                        hutchinson_probes=16, top_k=8)
        top = found.singular["top"][0]
    else:
        field.batch_rows = DENSE_BATCH_ROWS[dim]
        jacobian = field.jacobian(x, a, D)
        if full:
            top = diagnose_jacobians(jacobian, a, D).singular_values[0, :8]
        else:
            top = np.linalg.svd(D * jacobian[0], compute_uv=False)[:8]
    queue.put((time.perf_counter() - start, _peak_megabytes() - base, np.asarray(top)))


def _in_process(kind: str, dim: int, full: bool) -> tuple[float, float, np.ndarray]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(kind, dim, full, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def bench_matrix_free_spectra(quick: bool):
    """Rows of the module docstring, one per size, yielded as each is measured."""
    try:
        import diffusers  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        yield {"benchmark": "matrix-free spectra (needs torch and diffusers)", "ours_s": None,
               "baseline_s": None, "ratio": None, "target": None, "notes": "skipped"}
        return
    for dim in ((3072,) if quick else (3072, 12288)):
        full = dim <= 3072
        ours_s, ours_mb, ours_top = _in_process("matrix-free", dim, full)
        base_s, base_mb, base_top = _in_process("dense", dim, full)
        agreement = float(np.max(np.abs(ours_top - base_top) / base_top))
        notes = (f"peak memory {ours_mb:.0f} MB vs {base_mb:.0f} MB "
                 f"({base_mb / max(ours_mb, 1.0):.1f}x); top-8 singular values agree to "
                 f"{agreement:.1e}" + ("" if full else "; baseline: singular values only"))
        yield {"benchmark": f"Jn spectra, UNet d={dim}: matrix-free vs full Jacobian",
               "ours_s": ours_s, "baseline_s": base_s, "ratio": base_s / ours_s, "target": None,
               "ours_peak_mb": ours_mb, "baseline_peak_mb": base_mb,
               "memory_ratio": base_mb / max(ours_mb, 1.0), "notes": notes}


BENCHMARKS = [bench_matrix_free_spectra]
