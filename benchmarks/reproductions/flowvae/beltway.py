"""The "Beltway" two-ring potential in Cartesian and in polar inputs (flowvae): what does a 1D latent keep?

Beltway (defined in :mod:`cvplug.plugins.flowvae.toys`): u(x, y) = ((r − 1.5)² − 0.25)² / 0.02, two ring-shaped
lanes at r = 1 and r = 2 behind a 3.1 kT barrier, flat in the angle (kT = 1). The same exact samples are given
to the VAE as (x, y) or as (r, θ) with θ periodic (sin/cos into the encoder, von Mises in the decoders; the
energy in polar coordinates carries −log r). With one latent dimension the VAE must choose between the lane
(discrete) and the angle (continuous, periodic); the decoder and the input representation decide which.

    python benchmarks/reproductions/flowvae/beltway.py --out runs/flowvae-beltway

Outputs in ``--out``: ``table.md``, ``results.json``, ``study.png`` (first latent over the plane, with samples
drawn from the VAE), ``ckpt/``.
"""
from __future__ import annotations

import torch

from toy_study import ToyCase, run_from_arguments, study_parser
from cvplug.plugins.flowvae.toys import BELTWAY_BOUNDS, PolarCoordinates, beltway_u, grid_sample, polar_reduced_energy


def polar_to_cartesian(polar: torch.Tensor) -> torch.Tensor:
    return torch.stack([polar[:, 0] * torch.cos(polar[:, 1]), polar[:, 0] * torch.sin(polar[:, 1])], dim=1)


def main() -> None:
    parser = study_parser(__doc__, "runs/flowvae-beltway")
    parser.add_argument("--n-components", type=int, default=1, help="latent dimensions")
    args = parser.parse_args()
    xy = grid_sample(beltway_u, *BELTWAY_BOUNDS, args.n_train + args.n_test, spacing=0.01, seed=args.seed)
    cases = [ToyCase("cartesian", xy, beltway_u, BELTWAY_BOUNDS),
             ToyCase("polar", xy, polar_reduced_energy(beltway_u), BELTWAY_BOUNDS, periodic=(False, True),
                     observation=PolarCoordinates(), to_cartesian=polar_to_cartesian)]
    run_from_arguments(cases, args, n_components=args.n_components)


if __name__ == "__main__":
    main()
