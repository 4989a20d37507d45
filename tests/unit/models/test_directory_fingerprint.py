"""Directory fingerprints: same files give the same hash, same-shaped weights with other values another."""

from pathlib import Path

import torch
from safetensors.torch import save_file

from leanlm.models.loader import _directory_fingerprint


def checkpoint(directory: Path, seed: int) -> Path:
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "llama"}')
    weights = torch.randn(512, 1024, generator=torch.Generator().manual_seed(seed))  # 2 MiB of float32
    save_file({"weight": weights}, directory / "model.safetensors")
    return directory


def test_same_files_same_fingerprint(tmp_path):
    assert _directory_fingerprint(checkpoint(tmp_path / "a", 0)) == _directory_fingerprint(checkpoint(tmp_path / "b", 0))


def test_other_weights_other_fingerprint(tmp_path):
    first, second = checkpoint(tmp_path / "a", 0), checkpoint(tmp_path / "b", 1)

    assert (first / "model.safetensors").stat().st_size == (second / "model.safetensors").stat().st_size
    assert _directory_fingerprint(first) != _directory_fingerprint(second)
