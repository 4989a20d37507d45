"""Resolve a model spec to a loaded (model, tokenizer) pair.

A spec is, in the order tried: a registry name (`smollm2-135m-instruct`), a `.gguf` file, a local Hugging
Face directory, or a hub id (only where a hub is reachable). GGUF files are dequantised once and cached.
"""

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from leanlm.errors import ModelFileError, ModelNotFoundError
from leanlm.home import leanlm_home
from leanlm.models.gguf_cache import converted_dir, gguf_fingerprint
from leanlm.models.registry import DEFAULT_MODEL, REGISTRY, registry_entry

logger = logging.getLogger(__name__)

# samples of each weight file that go into a directory fingerprint (see _directory_fingerprint)
FINGERPRINT_SLICES, FINGERPRINT_SLICE_BYTES = 16, 64 * 1024


@dataclass
class LoadedModel:
    """A model ready for inference, with what artifacts need to check they were fitted on it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # the spec the user gave
    fingerprint: str  # stable id of the weights: GGUF fingerprint or hash of the safetensors index
    directory: Path | None = None  # the Hugging Face directory the weights were loaded from

    @property
    def max_context(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 0) or 0)


def load_model(spec: str = DEFAULT_MODEL, *, dtype: torch.dtype = torch.float32, device: str = "cpu") -> LoadedModel:
    """Load the model a spec names, in eval mode, on `device`."""
    directory, fingerprint = _resolve(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype)
    except (OSError, ValueError) as err:  # transformers 5.25 raises ValueError for a missing tokenizer
        raise ModelFileError(
            f"cannot load model from {directory}: {err}; if this is leanlm's cache, delete that directory "
            "and run again to convert anew"
        ) from err
    model.to(device).eval()
    _set_padding(tokenizer)
    logger.debug("loaded %s from %s (%s, %s)", spec, directory, dtype, device)
    return LoadedModel(model=model, tokenizer=tokenizer, name=spec, fingerprint=fingerprint, directory=Path(directory))


def _resolve(spec: str) -> tuple[str | Path, str]:
    """Return (directory or hub id to load, fingerprint) for a spec."""
    entry = registry_entry(spec)
    if entry is not None:
        home = leanlm_home()
        gguf = entry.gguf_path(home)
        return converted_dir(gguf, home), gguf_fingerprint(gguf)

    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelFileError(f"GGUF file {path} not found; check the path")
        return converted_dir(path.resolve(), leanlm_home()), gguf_fingerprint(path)

    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelFileError(f"{path} has no config.json, so it is not a Hugging Face model directory")
        _check_not_artifact(path)
        return path, _directory_fingerprint(path)

    if path.is_file():
        raise ModelFileError(f"{path} is a file but not a .gguf model; pass a .gguf file or a model directory")
    if spec.startswith((".", "/", "~")):
        raise ModelNotFoundError(f"model directory {path} not found; check the path")
    if spec.count("/") != 1:
        raise ModelNotFoundError(
            f"unknown model {spec!r}; use a registry name ({', '.join(REGISTRY)}), a .gguf file, "
            "a local Hugging Face directory or a hub id such as org/name"
        )
    return _hub_snapshot(spec)


def _hub_snapshot(repo_id: str) -> tuple[Path, str]:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        directory = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.jinja"]))
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError, ValueError) as err:
        raise ModelNotFoundError(
            f"cannot fetch {repo_id!r} from the Hugging Face hub: the hub is unreachable or has no such "
            f"repository; use a registry name ({', '.join(REGISTRY)}), a .gguf file or a local directory"
        ) from err
    return directory, _directory_fingerprint(directory)


def _check_not_artifact(directory: Path) -> None:
    """Raise ModelFileError when `directory` is a leanlm artifact (it has a kind but no model_type)."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return  # from_pretrained reports an unreadable config.json
    if isinstance(config, dict) and "kind" in config and "model_type" not in config:
        raise ModelFileError(
            f"{directory} is a leanlm {config['kind']!r} artifact, not a model; give it to the option that takes "
            "it (such as --adamoe or --kv) and the model it was fitted on with -m"
        )


def _directory_fingerprint(directory: Path) -> str:
    """Hash config.json, the weight files' names and sizes, and samples of their bytes.

    Reading 16 slices of 64 KiB per weight file costs milliseconds and distinguishes two checkpoints of the
    same shape with different weights, such as two conversions of one model with other settings.
    NOTE: a change confined to bytes between the slices leaves the fingerprint unchanged.
    """
    digest = hashlib.sha256((directory / "config.json").read_bytes())
    for weights in sorted(directory.glob("*.safetensors")):
        size = weights.stat().st_size
        digest.update(f"{weights.name}:{size}".encode())
        with weights.open("rb") as file:
            for index in range(FINGERPRINT_SLICES):
                file.seek(size * index // FINGERPRINT_SLICES)
                digest.update(file.read(FINGERPRINT_SLICE_BYTES))
    return digest.hexdigest()[:16]


def _set_padding(tokenizer: PreTrainedTokenizerBase) -> None:
    # Decoder-only batches are padded on the left so every row's last token is its newest one.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
