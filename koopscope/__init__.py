"""koopscope: Hierarchical Koopman Diffusion toolkit."""
__version__ = "0.1.0"
