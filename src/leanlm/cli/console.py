"""Shared pieces of the CLI: consoles, progress bars, option parsing and JSON output."""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from leanlm.errors import InvalidArgumentError, LeanLMError
from leanlm.models import LoadedModel, load_model

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool) -> None:
    import transformers

    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(console=err_console)], force=True)
    # transformers' own per-load progress bars and notices would bury the output of short commands.
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


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
    """Parse a comma-separated list of integers such as "512,4096"."""
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgumentError(f"{option} expects comma-separated integers such as 512,4096, got {text!r}")


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidArgumentError(f"{option} expects comma-separated numbers such as 0,0.5,1, got {text!r}")


def write_json(path: Path | None, payload: dict) -> None:
    """Write results as sorted, indented JSON; do nothing when no path was given."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        raise LeanLMError(f"cannot write JSON results to {path} ({err.strerror}); choose a writable path") from err
    err_console.print(f"wrote {path}")


def load_with_status(spec: str) -> LoadedModel:
    """Load a model behind a spinner, since a first load of a GGUF file dequantises it (about 20 s for 135M)."""
    with err_console.status(f"loading {spec} (the first load of a GGUF file converts it)"):
        return load_model(spec)
