"""ecgscale: scaling-law studies of ECG deep-learning models."""

__version__ = "0.1.0"
