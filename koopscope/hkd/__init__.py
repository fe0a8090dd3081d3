"""Hierarchical Koopman Diffusion: the model and its per-level Koopman generators."""
