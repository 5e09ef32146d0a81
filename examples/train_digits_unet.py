"""Train a small diffusers UNet on scikit-learn's digits, save it, and diagnose it (THEORY E, A).

Data: the 1797 digits of 8 x 8 gray levels, scaled to ``[-1, 1]`` and upsampled to 16 x 16 by
repeating each pixel 2 x 2. The upsampled images lie exactly in a 64-dimensional subspace of
``R^256`` (61 directions carry variance: three pixels are constant), a linear manifold with 195
normal directions, so THEORY A predicts a normalized Jacobian with eigenvalue ``-1`` off the
span and ``-tau / (tau + lambda_i)`` along the data's covariance eigenvalues ``lambda_i``.

Model: ``diffusers.UNet2DModel`` (16 x 16, one channel, block widths 32 and 64, attention in the
lower block) trained to predict epsilon under the default DDPM schedule (linear betas,
T = 1000), a few minutes on two CPU cores. It is saved as a pipeline folder (``model_index.json``,
``unet/``, ``scheduler/``) with the training rows beside it, then

    diffphase diagnose --diffusers OUT/pipeline --data OUT/digits16.npy --times ...

sets the network's spectra, local dimension and non-conservativeness along its own backward
trajectories next to the Gaussian prediction from the digits' covariance, the THEORY A
read-out and the exact empirical score of the 1797 digits (``fields_diagnose_theory.png``).

Run:  python examples/train_digits_unet.py [--steps 1200] [--out digits-unet]
      [--spectra auto|dense|matrix-free] [--threads N]
(needs the torch extra with diffusers: pip install 'diffphase[torch,data]').
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def digit_rows() -> np.ndarray:
    """The digits as ``(1797, 256)`` rows in ``[-1, 1]``, each pixel repeated 2 x 2."""
    from sklearn.datasets import load_digits

    images = load_digits().images / 8.0 - 1.0
    return np.kron(images, np.ones((1, 2, 2))).reshape(len(images), -1)


def small_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(32, 64),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                       attention_head_dim=16)


def train(rows: np.ndarray, steps: int, batch: int = 64, seed: int = 0):
    """Epsilon-prediction training under the default DDPM schedule (AdamW, cosine decay)."""
    import torch
    from diffusers import DDPMScheduler

    torch.manual_seed(seed)
    model, scheduler = small_unet(), DDPMScheduler(num_train_timesteps=1000)
    data = torch.as_tensor(rows, dtype=torch.float32).reshape(-1, 1, 16, 16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        clean = data[torch.randint(0, len(data), (batch,))]
        noise = torch.randn_like(clean)
        timesteps = torch.randint(0, 1000, (batch,))
        noisy = scheduler.add_noise(clean, noise, timesteps)
        loss = torch.mean((model(noisy, timesteps).sample - noise) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 200 == 0 or step == steps:
            print(f"step {step:5d}  loss {loss.item():.4f}  ({time.perf_counter() - start:.0f} s)",
                  flush=True)
    return model.eval(), scheduler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200, help="Training steps.")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (on busy shared cores 1 is often fastest).")
    parser.add_argument("--out", default="digits-unet", help="Output folder.")
    parser.add_argument("--spectra", default="auto", choices=("auto", "dense", "matrix-free"))
    parser.add_argument("--times", default="0.01,0.03,0.1,0.3,1,3,10",
                        help="Diagnosis times (ve: tau).")
    args = parser.parse_args()

    import torch
    from diffusers import DDPMPipeline

    from diffphase.cli import main as diffphase

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    rows = digit_rows()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "digits16.npy", rows)
    model, scheduler = train(rows, args.steps)
    DDPMPipeline(unet=model, scheduler=scheduler).save_pretrained(out / "pipeline")
    print(f"saved {out / 'pipeline'}")

    argv = ["diagnose", "--diffusers", str(out / "pipeline"), "--data",
            str(out / "digits16.npy"), "--times", args.times, "--trajectories", "8",
            "--spectra", args.spectra, "--out", str(out / "diagnose"), "--force"]
    print("diffphase " + " ".join(argv), flush=True)
    try:
        diffphase(argv)
    except SystemExit as exit_info:
        if exit_info.code:
            raise
    summary = json.loads((out / "diagnose" / "fields_diagnose.json").read_text())
    print(f"{'tau':>8} {'network':>8} {'empirical':>9} {'Gaussian':>8} {'THEORY A':>8} "
          f"{'|A|/|J|':>8}")
    for entry in summary["comparison"]["time_points"]:
        network = entry["network"]
        print(f"{entry['tau']:8.3g} {network['local_dimension']:8.1f} "
              f"{entry['empirical']['local_dimension_mean']:9.1f} "
              f"{entry['gaussian']['local_dimension']:8d} {entry['theory_readout']:8.1f} "
              f"{network['nonconservativeness']:8.3f}")
    print(f"figures in {out / 'diagnose'}")


if __name__ == "__main__":
    main()
