"""leanlm: make language models cheaper to run and to train, on real Hugging Face models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leanlm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
