"""kvpress presses as peers of leanlm's KV-cache methods: same model files, same windows, same metrics.

kvpress 0.5.5 requires transformers < 5.3 and leanlm requires 5.25, so kvpress cannot be imported here.
`ensure_kvpress_env` builds a second virtual environment under `$LEANLM_HOME/venvs`, and `run_kvpress_peers`
runs `kvpress_worker.py` with that environment's python. The two processes exchange files: the windows as
safetensors, the request and the results as JSON.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock
from safetensors.torch import save_file

from leanlm.errors import InvalidArgumentError, LeanLMError, ModelFileError

logger = logging.getLogger(__name__)

KVPRESS_VERSION = "0.5.5"
# 5.2.0 is the newest release below kvpress 0.5.5's bound of < 5.3. 4.57.x would load leanlm's model directories
# with the wrong RoPE base, because transformers 4.57 reads `rope_theta` and ignores the `rope_parameters` entry
# that transformers 5 writes to config.json.
TRANSFORMERS_VERSION = "5.2.0"
WORKER_SCRIPT = Path(__file__).with_name("kvpress_worker.py")
WORKER_TIMEOUT_S = 7200.0  # default for one worker run: every press, ratio and window of one benchmark
PIP_TIMEOUT_S = 1800.0  # one pip install step
READY_STAMP = "leanlm-ready.json"
OUTPUT_TAIL_LINES = 20  # lines of a failed subprocess's output quoted in the error


@dataclass(frozen=True)
class PressSpec:
    """The kvpress class of one press, with the attention and prefill length that class needs."""

    class_name: str
    needs_eager: bool = False  # the press reads attention weights, which only eager attention returns
    min_tokens: int = 1  # shortest prefill the press accepts


# Names are the `method` suffix in results ("kvpress-snapkv"). The minimum lengths follow the defaults of
# kvpress 0.5.5: SnapKV needs more tokens than its 64-token window, the others more than their 4 sink tokens.
SUPPORTED_PRESSES = {
    "snapkv": PressSpec("SnapKVPress", min_tokens=65),
    "knorm": PressSpec("KnormPress"),
    "streaming-llm": PressSpec("StreamingLLMPress", min_tokens=5),
    "expected-attention": PressSpec("ExpectedAttentionPress", min_tokens=5),
    "observed-attention": PressSpec("ObservedAttentionPress", needs_eager=True),  # H2O's accumulated attention
    "tova": PressSpec("TOVAPress", min_tokens=2),
}


def ensure_kvpress_env(home: Path) -> Path:
    """Build the kvpress virtual environment under `home / "venvs"` unless it is ready, and return its python.

    The environment gets the same torch build as this process, then kvpress and transformers at the
    pinned versions. A stamp file marks it ready only after every step succeeded, so an interrupted build
    is removed and redone on the next call. A file lock keeps concurrent callers from building it twice.
    """
    venv = home / "venvs" / f"kvpress-{KVPRESS_VERSION}"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    requirements = _env_requirements()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        if _is_ready(venv, python, requirements):
            return python
        if venv.exists():
            logger.info("removing incomplete or outdated kvpress environment %s", venv)
            shutil.rmtree(venv)
        _build_env(venv, python, requirements)
        (venv / READY_STAMP).write_text(json.dumps(requirements, indent=2))
    logger.info("kvpress environment ready at %s", venv)
    return python


def _env_requirements() -> dict[str, str]:
    # torch.__version__ carries the build tag (e.g. "2.13.0+cpu"), so pip installs the same build as here
    # rather than the default build of that version.
    return {
        "torch": f"torch=={torch.__version__}",
        "kvpress": f"kvpress=={KVPRESS_VERSION}",
        "transformers": f"transformers=={TRANSFORMERS_VERSION}",
    }


def _is_ready(venv: Path, python: Path, requirements: dict[str, str]) -> bool:
    stamp = venv / READY_STAMP
    if not stamp.is_file() or not python.is_file():
        return False
    try:
        return json.loads(stamp.read_text()) == requirements
    except json.JSONDecodeError:
        return False


def _build_env(venv: Path, python: Path, requirements: dict[str, str]) -> None:
    logger.info("creating kvpress environment %s", venv)
    _run_step([sys.executable, "-m", "venv", str(venv)], timeout_s=PIP_TIMEOUT_S)

    pip = [str(python), "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    logger.info("installing %s into %s", requirements["torch"], venv)
    _run_step([*pip, requirements["torch"]], timeout_s=PIP_TIMEOUT_S)

    # the constraint keeps kvpress's dependencies from replacing the torch build installed above
    constraints = venv / "leanlm-constraints.txt"
    constraints.write_text(requirements["torch"] + "\n")
    logger.info("installing %s and %s into %s", requirements["kvpress"], requirements["transformers"], venv)
    _run_step([*pip, "-c", str(constraints), requirements["kvpress"], requirements["transformers"]],
              timeout_s=PIP_TIMEOUT_S)

    logger.info("checking that kvpress imports in %s", venv)
    _run_step([str(python), "-c", "import kvpress, transformers, safetensors"], timeout_s=PIP_TIMEOUT_S)


def _run_step(command: list[str], *, timeout_s: float) -> None:
    """Run one setup command and raise LeanLMError with the command and its last output lines if it fails."""
    try:
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=timeout_s, env=_child_env()
        )
    except subprocess.TimeoutExpired as err:
        raise LeanLMError(
            f"kvpress environment setup timed out after {timeout_s:.0f} s: {' '.join(command)}. "
            "Check access to PyPI and run again."
        ) from err
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-OUTPUT_TAIL_LINES:])
        raise LeanLMError(
            f"kvpress environment setup failed with exit code {done.returncode}: {' '.join(command)}\n{tail}\n"
            "Fix the cause above (often no access to PyPI or a full disk) and run again."
        )


def _child_env() -> dict[str, str]:
    """Return this process's environment without the variables that would point a child at leanlm's venv."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false")
    return env


def run_kvpress_peers(
    model_dir: Path,
    windows: torch.Tensor,
    context: int,
    presses: list[str],
    ratios: list[float],
    *,
    home: Path,
    passkey: list[dict] | None = None,
    decode_contexts: list[int] | None = None,
    decode_tokens: int = 16,
    timeout_s: float = WORKER_TIMEOUT_S,
) -> list[dict]:
    """Measure kvpress presses on `windows` [N, T] in the kvpress environment and return one dict per run.

    The first result is "kvpress-none" (no press, ratio 0), then one per (press, ratio) in argument order.
    Each has `method`, `compression_ratio` (fraction of context tokens removed), `ppl`, `nll`, `tokens`,
    `windows` and `kv_bytes` (mean bytes the cache held after prefill), as `leanlm.eval.continuation_perplexity`
    defines them. `passkey_acc` is added when `passkey` prompts ({"tokens": [...], "key": "12345"}) are
    given, and `decode_tokens_per_s` ({context: tokens/s}) when `decode_contexts` are given.
    Raises InvalidArgumentError for bad arguments and LeanLMError when the environment or the worker fails.
    """
    _check_arguments(model_dir, windows, context, presses, ratios, passkey, decode_contexts, decode_tokens)
    python = ensure_kvpress_env(home)
    request = {
        "model_dir": str(Path(model_dir).resolve()),
        "context": context,
        "presses": [_press_entry(name) for name in presses],
        "ratios": [float(ratio) for ratio in ratios],
        "passkey": passkey or [],
        "decode_contexts": decode_contexts or [],
        "decode_tokens": decode_tokens,
    }
    with tempfile.TemporaryDirectory(prefix="leanlm-kvpress-") as tmp:
        input_dir, output = Path(tmp) / "input", Path(tmp) / "results.json"
        input_dir.mkdir()
        save_file({"windows": windows.to(torch.int64).contiguous()}, str(input_dir / "windows.safetensors"))
        (input_dir / "request.json").write_text(json.dumps(request, indent=2))
        _run_worker(python, input_dir, output, timeout_s)
        return _read_results(output)


def _press_entry(name: str) -> dict:
    spec = SUPPORTED_PRESSES[name]
    return {"name": name, "class": spec.class_name, "needs_eager": spec.needs_eager}


def _check_arguments(model_dir, windows, context, presses, ratios, passkey, decode_contexts, decode_tokens) -> None:
    if not (Path(model_dir) / "config.json").is_file():
        raise ModelFileError(f"{model_dir} has no config.json. Pass a Hugging Face model directory.")
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise InvalidArgumentError(f"expected token windows of shape [N, T] with N > 0, got {tuple(windows.shape)}")
    if not 0 < context < windows.shape[1]:
        raise InvalidArgumentError(
            f"context must be between 1 and the window length minus 1 ({windows.shape[1] - 1}), got {context}"
        )
    _check_presses(presses)
    bad_ratios = [ratio for ratio in ratios if not 0 <= ratio < 1]
    if not ratios or bad_ratios:
        raise InvalidArgumentError(f"compression ratios must be a non-empty list in [0, 1), got {ratios}")
    if decode_tokens < 1:
        raise InvalidArgumentError(f"decode_tokens must be a positive integer, got {decode_tokens}")
    if any(length < 1 for length in decode_contexts or []):
        raise InvalidArgumentError(f"decode contexts must be positive token counts, got {decode_contexts}")
    for item in passkey or []:
        if not item.get("tokens") or not isinstance(item.get("key"), str):
            raise InvalidArgumentError(
                f"each passkey prompt needs a non-empty 'tokens' list and a string 'key', got keys {sorted(item)}"
            )
    prefills = [context, *(decode_contexts or []), *(len(item["tokens"]) for item in passkey or [])]
    _check_prefill_lengths(presses, min(prefills))


def _check_presses(presses: list[str]) -> None:
    unknown = [name for name in presses if name not in SUPPORTED_PRESSES]
    if unknown or not presses:
        raise InvalidArgumentError(
            f"unknown or missing kvpress press names {unknown or presses}. "
            f"Use one or more of {', '.join(SUPPORTED_PRESSES)}"
        )


def _check_prefill_lengths(presses: list[str], shortest: int) -> None:
    for name in presses:
        needed = SUPPORTED_PRESSES[name].min_tokens
        if shortest < needed:
            raise InvalidArgumentError(
                f"press {name} needs prefills of at least {needed} tokens, but the shortest context, passkey "
                f"prompt or decode context has {shortest}. Use longer inputs or drop {name}."
            )


def _run_worker(python: Path, input_dir: Path, output: Path, timeout_s: float) -> None:
    """Run the worker script, relaying each line it prints to this module's logger."""
    command = [str(python), "-I", str(WORKER_SCRIPT), str(input_dir), str(output)]
    logger.info("starting kvpress worker: %s", " ".join(command))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=_child_env())
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    relay = threading.Thread(target=_relay_lines, args=(process.stdout, tail), daemon=True)
    relay.start()
    try:
        returncode = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as err:
        process.kill()
        process.wait()
        relay.join(timeout=5)
        raise LeanLMError(
            f"kvpress worker timed out after {timeout_s:.0f} s and was stopped. Last output lines:\n"
            + "\n".join(tail) + "\nPass a larger timeout_s, or fewer windows, presses or ratios."
        ) from err
    relay.join()
    if returncode != 0:
        raise LeanLMError(
            f"kvpress worker failed with exit code {returncode}: {' '.join(command)}. Last output lines:\n"
            + "\n".join(tail) + "\nFix the cause above; delete the kvpress environment if it is damaged."
        )


def _relay_lines(stream, tail: deque[str]) -> None:
    for line in stream:
        line = line.rstrip()
        tail.append(line)
        level, message = _split_level(line)
        logger.log(level, "kvpress worker: %s", message)


def _split_level(line: str) -> tuple[int, str]:
    """Return the logging level of a worker line ("INFO message", as the worker logs) and its message.

    A line without a level prefix (a traceback, a library's own print) is relayed at WARNING.
    """
    name, _, message = line.partition(" ")
    if name in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        return logging.getLevelName(name), message
    return logging.WARNING, line


def _read_results(output: Path) -> list[dict]:
    try:
        results = json.loads(output.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise LeanLMError(
            f"kvpress worker exited without error but its results at {output} are missing or not JSON ({err}). "
            "Check the worker's log lines above."
        ) from err
    if not isinstance(results, list) or not all(isinstance(row, dict) and "method" in row for row in results):
        raise LeanLMError(
            f"kvpress worker results at {output} are not a list of result objects, got {results!r:.200}. "
            "Check that the worker script matches this leanlm version."
        )
    for row in results:
        if "decode_tokens_per_s" in row:  # JSON object keys are strings, but the contexts are token counts
            row["decode_tokens_per_s"] = {int(key): value for key, value in row["decode_tokens_per_s"].items()}
    return results
