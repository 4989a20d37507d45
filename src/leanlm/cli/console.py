"""Shared pieces of the CLI: consoles, logging, progress bars, option parsing and JSON output.

Nothing here imports torch or transformers at module level, so `leanlm --help` starts quickly.
"""

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from leanlm.errors import InvalidArgumentError, LeanLMError

# soft_wrap: never insert line breaks into model output or file paths when stdout is not a terminal
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

KV_HELP = (
    "KV-cache artifact directory from `leanlm kv fit`; repeat it to combine an Attention-Gate with a "
    "MatryoshkaKV artifact."
)


def setup_logging(verbose: bool) -> None:
    """Log leanlm's notices (such as a first-time model conversion); with `verbose`, everything at INFO."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("leanlm").setLevel(logging.DEBUG if verbose else logging.INFO)


def quiet_transformers() -> None:
    """Turn off transformers' per-load progress bars and notices, which would bury short outputs."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def load_with_status(spec: str):
    """Load a model behind a spinner, since a first load of a GGUF file dequantises it (about 20 s for 135M)."""
    from leanlm.models import load_model

    quiet_transformers()
    with err_console.status(f"loading {spec}"):
        return load_model(spec)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator:
    """Yield an `advance(n)` callback that moves a rich progress bar on stderr."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    """Parse a comma-separated list of integers such as "2,8,16"."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"{option} expects comma-separated integers such as 2,8,16, got {text!r}")


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """Parse a comma-separated list of numbers such as "0,0.5,1"."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise InvalidArgumentError(f"{option} expects comma-separated numbers such as 0,0.5,1, got {text!r}")


def check_json_path(path: Path | None) -> None:
    """Fail before a long run, not after it, when the results could not be written to `path`."""
    if path is None:
        return
    if path.is_dir():
        raise LeanLMError(f"--json {path} is a directory; give a file path such as {path / 'results.json'}")
    check_output_path(path, "--json")


def check_output_path(path: Path, option: str) -> None:
    """Fail before a long run when nothing can be created at `path` (its nearest existing parent is read-only)."""
    existing = next(p for p in path.absolute().parents if p.exists())
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".leanlm-write-check-"):
            pass
    except OSError as err:
        raise LeanLMError(f"cannot write {option} {path} ({err.strerror} in {existing}); choose a writable path") from err


def write_json(path: Path | None, payload: dict) -> None:
    """Write results as sorted, indented JSON, creating missing parent directories; no path, no file."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise LeanLMError(f"cannot write JSON results to {path} ({err.strerror}); choose a writable path") from err
    err_console.print(f"wrote {path}", highlight=False)


def chat_backend(backend: str, model: str, batch_size: int, concurrency: int, api_key_env: str):
    """Return the chat backend a `--backend` option names: "local" (load `model`) or an http(s) server URL."""
    from leanlm.runtime.backends import LocalBackend, OpenAICompatibleBackend

    if backend == "local":
        return LocalBackend(load_with_status(model), batch_size=batch_size)
    if backend.startswith(("http://", "https://")):
        return OpenAICompatibleBackend(backend, model, api_key_env=api_key_env, concurrency=concurrency)
    raise InvalidArgumentError(f"--backend must be 'local' or an http(s) URL, got {backend!r}")
