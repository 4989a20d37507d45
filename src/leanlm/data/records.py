"""Record types shared by the data modules."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    """Provenance of one named data source."""

    name: str
    kind: str
    package: str
    file: str
    licence: str
    description: str
    size: str


@dataclass(frozen=True)
class ReasoningTask:
    """One question with its reference answer.

    `id` is stable across runs: "<generator>-<seed>-<index>" for a generator, "<file stem>-<line index>"
    (0-based) for a JSONL file.
    """

    id: str
    question: str
    answer: str
    dataset: str
