"""Exceptions r1lite raises for bad models and files (all are ValueErrors)."""


class ModelFormatError(ValueError):
    """A model file or folder is corrupt, truncated, or lacks a tensor or setting."""


class UnsupportedModelError(ValueError):
    """The checkpoint is of an architecture or variant r1lite does not run."""
