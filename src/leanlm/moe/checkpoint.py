"""Save a converted MoE as a Hugging Face checkpoint directory that plain transformers loads.

The directory contains what `save_pretrained` writes for the model and the tokenizer, plus `report.json`.
`config.json` also carries leanlm's artifact header (kind, leanlm version, base model name and fingerprint);
transformers keeps unknown config keys as attributes, so the header does not stop a plain load.
The directory is written under a temporary name and renamed into place.
"""

import json
import logging
import os
from pathlib import Path

from transformers import GraniteMoeForCausalLM

from leanlm import __version__
from leanlm.artifacts import (
    CONFIG_FILE,
    REPORT_FILE,
    check_replaceable,
    write_directory,
)
from leanlm.models.loader import LoadedModel

logger = logging.getLogger(__name__)

KIND = "moe-converted-model"


def check_moe_output(directory: Path) -> None:
    """Raise ArtifactError unless `directory` is free or contains an earlier converted MoE, which may be replaced."""
    check_replaceable(directory, KIND)


def save_moe_checkpoint(directory: Path, model: GraniteMoeForCausalLM, loaded: LoadedModel, report: dict) -> Path:
    """Write model, tokenizer, header and report to `directory` atomically, replacing an earlier converted MoE."""
    directory = Path(directory)
    check_moe_output(directory)
    header = {"kind": KIND, "leanlm_version": __version__, "base_model": loaded.name, "base_fingerprint": loaded.fingerprint}

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        if loaded.tokenizer is not None:
            loaded.tokenizer.save_pretrained(tmp)
        config_path = tmp / CONFIG_FILE
        _write_json(config_path, json.loads(config_path.read_text()) | header)
        _write_json(tmp / REPORT_FILE, report)
        _match_mode(tmp, config_path)

    write_directory(directory, fill, "the converted model")
    logger.info("wrote converted MoE to %s", directory)
    return directory


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _match_mode(directory: Path, reference: Path) -> None:
    """Give every file the permissions of `reference`, because safetensors writes files readable by the owner only."""
    mode = reference.stat().st_mode & 0o777
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, mode)
