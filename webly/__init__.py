"""webly: accurate, compact classifiers from large datasets with noisy labels."""

__version__ = "0.1.0"
