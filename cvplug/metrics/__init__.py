"""Metrics usable with any method: correlations with known coordinates, information, latent-space quality.

One module per family; this package re-exports their public names.
"""
from .correlation import circular_linear_correlation, knn_r2, unwrapped_angle_correlation
from .information import cut_at_emptiest, mutual_information, mutual_information_table
from .vae import active_dimensions, f_acc, jd_encode, jd_prior, total_correlation, vae_mc_proposal
from .isometry import isometry_mse
from .generative import boltzmann_grid, bond_length_deviation, logistic_accuracy, radius_of_gyration

__all__ = ["active_dimensions", "f_acc", "jd_encode", "jd_prior", "total_correlation", "vae_mc_proposal",
           "circular_linear_correlation", "knn_r2", "unwrapped_angle_correlation", "cut_at_emptiest", "mutual_information",
           "mutual_information_table", "isometry_mse", "boltzmann_grid", "bond_length_deviation",
           "radius_of_gyration", "logistic_accuracy"]
