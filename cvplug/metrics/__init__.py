"""Metrics usable with any method: correlations with known coordinates, information, latent-space quality.

One module per family; this package re-exports their public names.
"""
from .correlation import circular_linear_correlation, knn_r2

__all__ = ["circular_linear_correlation", "knn_r2"]
