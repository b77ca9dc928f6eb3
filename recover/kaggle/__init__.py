"""Kaggle packaging: offline wheels, staged datasets, rendered kernels, validation and push."""
