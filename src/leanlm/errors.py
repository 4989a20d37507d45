"""The one exception family of leanlm.

Every error a user can cause (bad model name, bad file, bad option value) is a `LeanLMError`. Its message
states what was wrong and what to do; the CLI prints it as one line and exits with code 2.
"""


class LeanLMError(Exception):
    """Base class of every error leanlm raises for bad input or a bad environment."""


class ModelNotFoundError(LeanLMError):
    """A model spec names no registry entry, local directory, GGUF file or reachable hub id."""


class ModelFileError(LeanLMError):
    """A model file or cached conversion is missing, unreadable or corrupt."""


class InvalidArgumentError(LeanLMError, ValueError):
    """An option or argument has a value outside what is allowed."""


class ContextTooLongError(InvalidArgumentError):
    """A prompt plus the tokens to generate exceed the model's maximum context."""


class DataSourceError(LeanLMError):
    """A named data source is unknown, or its package or file is missing."""


class CacheDirError(LeanLMError):
    """`$LEANLM_HOME` cannot be created or written."""


class ArtifactError(LeanLMError):
    """An artifact directory is missing, corrupt, of another kind, or fitted on another model."""
