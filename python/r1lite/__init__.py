"""r1lite: run DeepSeek-R1 and its distilled models on one workstation."""

from .errors import ModelFormatError, UnsupportedModelError
from .loader import load
from .model import Model

__version__ = "0.1.0"
__all__ = ["load", "Model", "ModelFormatError", "UnsupportedModelError", "__version__"]
