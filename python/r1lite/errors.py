"""Exceptions r1lite raises for bad models, files and arguments (all are ValueErrors)."""


class ModelFormatError(ValueError):
    """A model file or folder is corrupt, truncated, or lacks a tensor or setting."""


class UnsupportedModelError(ValueError):
    """The checkpoint is of an architecture or variant r1lite does not run."""


class InvalidArgument(ValueError):
    """An argument r1lite refuses: .param names it (e.g. "temperature", "prompt"), and .code says
    why when a caller may act on it ("context_length_exceeded": the prompt does not fit)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param, self.code = param, code
