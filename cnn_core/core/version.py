"""The package version, recorded in model cards."""

__version__ = "0.1.0"
