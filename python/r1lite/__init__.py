"""r1lite: run DeepSeek-R1 and its distilled models on one workstation."""

from .converter import convert
from .errors import InvalidArgument, ModelFormatError, UnsupportedModelError
from .generate import Generation, Piece
from .loader import chat, generate, load
from .model import Model, Prompt
from .speculative import Speculative
from .tokenizer import Tokenizer

__version__ = "0.1.0"
__all__ = ["load", "convert", "generate", "chat", "Model", "Prompt", "Generation", "Piece", "Tokenizer",
           "Speculative",
           "ModelFormatError", "UnsupportedModelError", "InvalidArgument", "__version__"]
