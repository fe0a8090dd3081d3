"""Spectral analysis of Koopman generators: eigendecompositions, modal projection, reconstruction."""
