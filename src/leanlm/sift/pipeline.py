"""The SIFT stages over a set of questions, batched per stage over the items still open.

1. Sticker: the model rewrites the question as a sticker (numbered conditions and one question line).
   Consensus: predict from the sticker alone and from question + sticker; equal answers resolve the item.
2. Forward optimisation: the model fixes the sticker against the question; consensus again.
3. Inverse generation: the model writes a sticker back from stage 2's question + sticker reasoning, then
   fixes it against the question; consensus again.
4. Fallback: an item no stage resolves is answered from the question alone (zero-shot chain of thought).

Items are tracked by id. Every call's input and output tokens are added to its item. Each finished item is
appended to a JSONL file at once, and after each stage the open items are saved beside it, so an
interrupted run resumes without redoing finished items or finished stages. A stage cut short runs again
for its open items.
"""

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leanlm.errors import DataSourceError, InvalidArgumentError
from leanlm.runtime.backends import ChatBackend, ChatRequest
from leanlm.sift import prompts
from leanlm.sift.answers import answers_equal, extract_answer
from leanlm.sift.sticker import extract_sticker

logger = logging.getLogger(__name__)

STAGES = ("stage1", "stage2", "stage3")
FALLBACK = "fallback"


@dataclass
class SiftItem:
    id: str
    question: str
    gold: str | None = None  # reference answer, for grading only


@dataclass
class SiftConfig:
    max_new_tokens: int = 512  # per prediction
    sticker_tokens: int = 256  # per sticker
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.sticker_tokens < 1:
            raise InvalidArgumentError(
                "max_new_tokens (--max-new-tokens) and sticker_tokens (--sticker-tokens) must be positive, "
                f"got {self.max_new_tokens} and {self.sticker_tokens}"
            )


@dataclass
class ItemRecord:
    """Everything SIFT did for one item: the JSONL record of a finished item."""

    id: str
    question: str
    gold: str | None
    stickers: dict[str, str | None] = field(default_factory=dict)  # stage -> sticker (None: no sticker block)
    # stage -> the whole reply, kept only where no sticker could be read from it, to show what the model wrote
    unformatted_stickers: dict[str, str] = field(default_factory=dict)
    # stage -> {"sticker": answer from the sticker alone, "question_and_sticker": answer from both}
    predictions: dict[str, dict[str, str | None]] = field(default_factory=dict)
    reasoning: dict[str, str] = field(default_factory=dict)  # stage -> the question + sticker reply
    stage: str | None = None  # the stage that resolved the item, or "fallback"
    answer: str | None = None
    correct: bool | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 0
    # stage (or "fallback") -> input + output tokens of that stage's calls; the inverse sticker counts in stage3
    tokens_by_stage: dict[str, int] = field(default_factory=dict)


class Sift:
    """Run SIFT with a chat backend; see the module docstring for the stages."""

    def __init__(self, backend: ChatBackend, config: SiftConfig | None = None):
        self.backend = backend
        self.config = config or SiftConfig()

    def run(
        self, items: Sequence[SiftItem], out: Path | None = None, progress: Callable[[int], None] | None = None
    ) -> list[ItemRecord]:
        """Answer every item; append each finished record to `out` (JSONL) and skip items already there.

        After each stage the open items' records are saved beside `out` (see `open_items_path`), so a rerun
        continues after the last finished stage instead of starting the open items again.
        """
        _check_ids(items)
        finished = read_records(out) if out is not None else {}
        records = [ItemRecord(item.id, item.question, item.gold) for item in items if item.id not in finished]
        if progress and finished:
            progress(len(items) - len(records))
        records, done_stages = _restore_open(out, records)
        logger.info(
            "SIFT: %d items, %d already finished, stages already run on the rest: %s",
            len(items), len(items) - len(records), ", ".join(done_stages) or "none",
        )

        for name, run_stage in self._stages():
            if name in done_stages:
                continue
            resolved = run_stage(_open(records))
            _append(out, resolved)
            if progress:
                progress(len(resolved))
            _save_open(out, name, done_stages, _open(records))
        _clear_open(out)

        by_id = {r.id: r for r in records} | {key: ItemRecord(**data) for key, data in finished.items()}
        return [by_id[item.id] for item in items]

    def _stages(self) -> list[tuple[str, Callable[[list[ItemRecord]], list[ItemRecord]]]]:
        """Return each stage's name and a function that runs it on the open records and returns those it resolved."""
        return [
            ("stage1", self._stage1), ("stage2", self._stage2), ("stage3", self._stage3), (FALLBACK, self._fallback),
        ]

    def _stage1(self, open_: list[ItemRecord]) -> list[ItemRecord]:
        """Write a sticker from the question, then check consensus."""
        self._stickers(open_, prompts.STICKER, "stage1", _fields)
        return self._consensus(open_, "stage1")

    def _stage2(self, open_: list[ItemRecord]) -> list[ItemRecord]:
        """Fix the stage-1 sticker against the question, then check consensus."""
        self._stickers(open_, prompts.REFINE_STICKER, "stage2", lambda r: _fields(r, sticker=r.stickers["stage1"]))
        return self._consensus(open_, "stage2")

    def _stage3(self, open_: list[ItemRecord]) -> list[ItemRecord]:
        """Write a sticker back from stage 2's reasoning, fix it against the question, then check consensus."""
        self._stickers(
            open_, prompts.STICKER_FROM_REASONING, "inverse", lambda r: _fields(r, reasoning=r.reasoning["stage2"]), "stage3"
        )
        self._stickers(open_, prompts.REFINE_STICKER, "stage3", lambda r: _fields(r, sticker=r.stickers["inverse"]))
        return self._consensus(open_, "stage3")

    def _fallback(self, open_: list[ItemRecord]) -> list[ItemRecord]:
        """Answer from the question alone, as a zero-shot chain of thought."""
        replies = self._call(open_, prompts.ZERO_SHOT_COT, _fields, self.config.max_new_tokens, FALLBACK)
        for record, reply in zip(open_, replies):
            self._resolve(record, FALLBACK, extract_answer(reply))
        return open_

    def _stickers(self, records, template, stage: str, fields, counted_in: str | None = None) -> None:
        """Ask for a sticker per record and keep its sticker block under `stickers[stage]`.

        The calls' tokens count in `counted_in` (default: `stage`).
        """
        replies = self._call(records, template, fields, self.config.sticker_tokens, counted_in or stage)
        for record, reply in zip(records, replies):
            record.stickers[stage] = extract_sticker(reply)
            if record.stickers[stage] is None:
                record.unformatted_stickers[stage] = reply

    def _consensus(self, records: list[ItemRecord], stage: str) -> list[ItemRecord]:
        """Predict from the sticker alone and from question + sticker; return the items whose answers agree.

        An item without a sticker block gets no sticker-alone prediction: with no facts to solve from, its
        answer could never count as consensus, so the call would only spend tokens.
        """
        tokens = self.config.max_new_tokens
        with_sticker = [r for r in records if r.stickers[stage] is not None]
        alone_replies = self._call(
            with_sticker, prompts.PREDICT_FROM_STICKER, lambda r: _fields(r, sticker=r.stickers[stage]), tokens, stage
        )
        alone = {r.id: reply for r, reply in zip(with_sticker, alone_replies)}
        both = self._call(
            records, prompts.PREDICT_FROM_QUESTION_AND_STICKER, lambda r: _fields(r, sticker=r.stickers[stage]), tokens, stage
        )

        resolved = []
        for record, both_reply in zip(records, both):
            alone_answer = extract_answer(alone[record.id]) if record.id in alone else None
            both_answer = extract_answer(both_reply)
            record.predictions[stage] = {"sticker": alone_answer, "question_and_sticker": both_answer}
            record.reasoning[stage] = both_reply
            if record.id in alone and answers_equal(both_answer, alone_answer):
                self._resolve(record, stage, both_answer)
                resolved.append(record)
        logger.info("SIFT %s: %d of %d items agree (%d had a sticker)", stage, len(resolved), len(records), len(with_sticker))
        return resolved

    def _call(self, records: list[ItemRecord], template, fields, max_new_tokens: int, stage: str) -> list[str]:
        """Send one request per record as one batch; add each call's tokens to its record and to `stage`."""
        if not records:
            return []
        requests = [
            ChatRequest(template.messages(**fields(r)), max_new_tokens=max_new_tokens, temperature=self.config.temperature)
            for r in records
        ]
        replies = self.backend.chat(requests)
        for record, reply in zip(records, replies):
            record.input_tokens += reply.input_tokens
            record.output_tokens += reply.output_tokens
            record.calls += 1
            spent = reply.input_tokens + reply.output_tokens
            record.tokens_by_stage[stage] = record.tokens_by_stage.get(stage, 0) + spent
        return [reply.text for reply in replies]

    @staticmethod
    def _resolve(record: ItemRecord, stage: str, answer: str | None) -> None:
        record.stage, record.answer = stage, answer
        record.correct = None if record.gold is None else answers_equal(record.gold, answer)


def read_records(path: Path) -> dict[str, dict]:
    """Return the finished records of a JSONL file by id ({} when it does not exist).

    A last line cut short by an interrupted write is skipped with a warning; any other bad line raises.
    """
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    records = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                logger.warning("skipping the incomplete last line of %s; its item runs again", path)
                continue
            raise DataSourceError(f"{path} line {number} is not JSON ({err}); fix or remove the line") from err
        records[record["id"]] = record
    return records


def open_items_path(out: Path) -> Path:
    """Return the file beside a records file that contains the open items between stages."""
    return out.with_name(out.name + ".open.json")


def _save_open(out: Path | None, stage: str, done_stages: list[str], open_records: list[ItemRecord]) -> None:
    """Record that `stage` has run, with the open items' records, atomically."""
    done_stages.append(stage)
    if out is None:
        return
    path = open_items_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps({"stages": done_stages, "records": [asdict(r) for r in open_records]}))
    partial.replace(path)


def _restore_open(out: Path | None, records: list[ItemRecord]) -> tuple[list[ItemRecord], list[str]]:
    """Return the open records and the stages already run on them, from the saved state when it fits.

    The state fits when it names exactly the items that are still open. Otherwise it belongs to another run
    (other items or another --n), and every open item starts again at stage 1.
    """
    if out is None or not open_items_path(out).is_file():
        return records, []
    try:
        state = json.loads(open_items_path(out).read_text())
        saved = [ItemRecord(**data) for data in state["records"]]
        stages = list(state["stages"])
    except (ValueError, KeyError, TypeError) as err:
        logger.warning("ignoring %s, which cannot be read (%s); open items start again at stage 1", open_items_path(out), err)
        return records, []
    if {r.id for r in saved} != {r.id for r in records}:
        logger.warning("ignoring %s: it is for other open items; they start again at stage 1", open_items_path(out))
        return records, []
    by_id = {r.id: r for r in saved}
    return [by_id[r.id] for r in records], stages


def _clear_open(out: Path | None) -> None:
    if out is not None:
        open_items_path(out).unlink(missing_ok=True)


def _append(path: Path | None, records: list[ItemRecord]) -> None:
    if path is None or not records:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as file:
        for record in records:
            file.write(json.dumps(asdict(record)) + "\n")
        file.flush()


def _open(records: list[ItemRecord]) -> list[ItemRecord]:
    return [r for r in records if r.stage is None]


def _fields(record: ItemRecord, **extra: str | None) -> dict[str, str]:
    """Return a prompt's fields: the question, and each extra field (a missing sticker becomes empty text)."""
    return {"question": record.question} | {key: value or "" for key, value in extra.items()}


def _check_ids(items: Sequence[SiftItem]) -> None:
    seen = set()
    for item in items:
        if item.id in seen:
            raise InvalidArgumentError(f"item id {item.id!r} appears twice; give every item its own id")
        seen.add(item.id)
