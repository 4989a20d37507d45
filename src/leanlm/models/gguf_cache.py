"""Dequantise a GGUF file once and keep the result as safetensors under `$LEANLM_HOME/models`.

transformers reads GGUF by dequantising every tensor (about 20 s for the 135M default model); the cached
safetensors directory loads in well under a second. A file lock makes concurrent processes wait for one
conversion, and the directory appears only by an atomic rename, so no process ever reads a half-written model.
"""

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import torch
from filelock import FileLock
from transformers import AutoModelForCausalLM, AutoTokenizer

from leanlm import __version__
from leanlm.errors import ModelFileError

logger = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
FINGERPRINT_BLOCK = 4 * 1024 * 1024  # bytes read from each end of the file for its fingerprint
SOURCE_FILE = "leanlm-source.json"


def gguf_fingerprint(path: Path) -> str:
    """Return a short stable id of a GGUF file: sha256 of its size and its first and last 4 MiB.

    Hashing a multi-GB file on every load would cost seconds. The two ends contain the header, the tensor
    index and the last tensors, so a re-quantisation or a truncation changes the fingerprint.
    """
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(FINGERPRINT_BLOCK))
        f.seek(max(0, size - FINGERPRINT_BLOCK))
        digest.update(f.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()[:16]


def check_gguf_header(path: Path) -> None:
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"{path} is not a GGUF file (it starts with {magic!r}, expected {GGUF_MAGIC!r})")


def converted_dir(gguf: Path, home: Path) -> Path:
    """Return the safetensors directory for `gguf`, converting it first if no process has yet."""
    check_gguf_header(gguf)
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    target = models / f"{gguf.stem}-{gguf_fingerprint(gguf)}"
    if target.is_dir():
        return target

    with FileLock(str(target) + ".lock"):
        if target.is_dir():  # another process finished the conversion while we waited
            return target
        _convert(gguf, target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    logger.info("converting %s once into %s (about 20 s for 135M parameters)", gguf.name, target)
    tmp = target.with_name(f".tmp-{target.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as err:  # transformers raises many types for a damaged file
        raise ModelFileError(f"cannot read GGUF file {gguf}: {err}; check the file or reinstall its package") from err

    # The dequantised weights are plain fp32 tensors: drop the GGUF quantiser so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        source = {"gguf": str(gguf), "fingerprint": gguf_fingerprint(gguf), "leanlm_version": __version__}
        (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2, sort_keys=True))
        os.replace(tmp, target)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelFileError(f"cannot write the converted model to {target.parent} ({err}); free space or "
                             f"set LEANLM_HOME to another directory") from err


def cached_models(home: Path) -> list[dict]:
    """Return what `$LEANLM_HOME/models` holds: one record per converted model."""
    models = home / "models"
    if not models.is_dir():
        return []
    records = []
    for path in sorted(p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".")):
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
        records.append({"name": path.name, "path": str(path), "bytes": size})
    return records
