"""Fitted artifacts on disk: a directory of `config.json`, `*.safetensors` and `report.json`.

`config.json` records the artifact's kind, the leanlm version and the base model's name and fingerprint, so
loading can refuse an artifact fitted on another model. A directory is written under a temporary name and
renamed into place, so an interrupted save never leaves a half-written artifact. No pickle anywhere.
"""

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from leanlm import __version__
from leanlm.errors import ArtifactError

CONFIG_FILE = "config.json"
REPORT_FILE = "report.json"


@dataclass
class Artifact:
    path: Path
    config: dict
    tensors: dict[str, dict[str, torch.Tensor]]  # file stem -> name -> tensor
    report: dict


def save_artifact(
    directory: Path,
    *,
    kind: str,
    base_model: str,
    base_fingerprint: str,
    config: dict,
    tensors: dict[str, dict[str, torch.Tensor]],
    report: dict,
) -> Path:
    """Write an artifact directory atomically, replacing an artifact of the same kind already at `directory`.

    Anything else at `directory` (a file, another kind of artifact, or a directory that is not a leanlm
    artifact) is left alone and raises `ArtifactError`.
    """
    directory = Path(directory)
    check_replaceable(directory, kind)
    header = {"kind": kind, "leanlm_version": __version__, "base_model": base_model, "base_fingerprint": base_fingerprint}

    def fill(tmp: Path) -> None:
        tmp.mkdir()
        _write_json(tmp / CONFIG_FILE, header | config)
        _write_json(tmp / REPORT_FILE, report)
        for stem, named in tensors.items():
            named = {name: t.detach().contiguous().cpu() for name, t in named.items()}
            save_file(named, str(tmp / f"{stem}.safetensors"))
            _match_json_mode(tmp / f"{stem}.safetensors", tmp / CONFIG_FILE)

    return write_directory(directory, fill, "the artifact")


def write_directory(directory: Path, fill: Callable[[Path], None], what: str) -> Path:
    """Write a directory atomically: `fill(tmp)` creates and fills a temporary directory, which then replaces
    `directory`. The old directory, if any, is removed only after the rename succeeded.

    Raises ArtifactError naming `what` when the file system refuses.
    """
    tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        fill(tmp)
        old = directory.with_name(f".old-{directory.name}-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ArtifactError(f"cannot write {what} to {directory} ({err.strerror}); choose a writable path") from err
    return directory


def _match_json_mode(path: Path, reference: Path) -> None:
    """Give `path` the permissions of `reference`, because safetensors writes files readable by the owner only."""
    os.chmod(path, reference.stat().st_mode & 0o777)


def check_replaceable(directory: Path, kind: str) -> None:
    """Raise `ArtifactError` unless `directory` is free or contains a leanlm artifact of `kind`, which may be replaced."""
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if directory.is_dir() and not directory.is_symlink():
        try:
            config = json.loads((directory / CONFIG_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            config = None
        found = config.get("kind") if isinstance(config, dict) else None
        if found == kind:
            return
        if found is not None:
            raise ArtifactError(
                f"{directory} contains a leanlm artifact of kind {found!r}, not {kind!r}, so it would be replaced; "
                "choose a new path"
            )
    raise ArtifactError(
        f"{directory} already exists and is not a leanlm artifact, so it would be replaced; choose a new path"
    )


def load_artifact(directory: Path, *, kinds: tuple[str, ...], base_fingerprint: str | None = None) -> Artifact:
    """Read an artifact, checking its kind and, when given, that it was fitted on the same base model."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise ArtifactError(f"{directory} is not a leanlm artifact (no {CONFIG_FILE}); fit one first")
    config = _read_json(config_path)
    if config.get("kind") not in kinds:
        raise ArtifactError(f"{directory} contains an artifact of kind {config.get('kind')!r}, but expected one of {', '.join(kinds)}")
    if base_fingerprint is not None and config.get("base_fingerprint") != base_fingerprint:
        raise ArtifactError(
            f"{directory} was fitted on {config.get('base_model')!r} (fingerprint {config.get('base_fingerprint')}), "
            f"not on the loaded model (fingerprint {base_fingerprint}); fit it again for this model"
        )

    tensors = {}
    for path in sorted(directory.glob("*.safetensors")):
        try:
            tensors[path.stem] = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise ArtifactError(f"artifact file {path} is corrupt ({err}); fit the artifact again") from err
    report = _read_json(directory / REPORT_FILE) if (directory / REPORT_FILE).is_file() else {}
    return Artifact(path=directory, config=config, tensors=tensors, report=report)


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"artifact file {path} is corrupt ({err}); fit the artifact again") from err
    if not isinstance(payload, dict):
        raise ArtifactError(f"artifact file {path} is corrupt (expected a JSON object); fit the artifact again")
    return payload
