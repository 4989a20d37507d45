"""The cache directory of leanlm, for converted models and other files: `$LEANLM_HOME`, default `~/.cache/leanlm`."""

import os
import tempfile
from pathlib import Path

from leanlm.errors import CacheDirError

HOME_ENV = "LEANLM_HOME"


def leanlm_home() -> Path:
    """Return `$LEANLM_HOME` (default `~/.cache/leanlm`), created and checked to be writable."""
    home = Path(os.environ.get(HOME_ENV) or Path.home() / ".cache" / "leanlm").expanduser()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-check-"):
            pass
    except OSError as err:
        raise CacheDirError(
            f"cannot write to the leanlm cache directory {home} ({err.strerror}); "
            f"set {HOME_ENV} to a writable directory"
        ) from err
    return home
