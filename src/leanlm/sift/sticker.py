"""The sticker block of a model's reply: what SIFT keeps of a sticker-generation call."""

import re

STICKER_BLOCK = re.compile(r"<sticker>(.*?)</sticker>", re.DOTALL | re.IGNORECASE)
NUMBERED_LINE = re.compile(r"^\s*\d+[.)]\s+\S", re.MULTILINE)
QUESTION_LINE = re.compile(r"^\s*question\s*:", re.MULTILINE | re.IGNORECASE)


def extract_sticker(reply: str) -> str | None:
    """Return the last complete <sticker> block of a reply, stripped, or None when there is none.

    Small models often drop the tags. So without them, a reply with numbered conditions followed by a
    'Question:' line counts as a sticker too, from its first numbered line on.
    """
    blocks = [block.strip() for block in STICKER_BLOCK.findall(reply) if block.strip()]
    if blocks:
        return blocks[-1]

    first = NUMBERED_LINE.search(reply)
    if first is None or QUESTION_LINE.search(reply, first.start()) is None:
        return None
    return reply[first.start():].strip()


def follows_sticker_format(sticker: str | None) -> bool:
    """Return whether a sticker has at least one numbered condition and a 'Question:' line after them."""
    if not sticker:
        return False
    first = NUMBERED_LINE.search(sticker)
    return first is not None and QUESTION_LINE.search(sticker, first.start()) is not None
