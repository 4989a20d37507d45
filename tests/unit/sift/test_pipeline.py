"""SIFT's stages with a scripted backend: transitions, the fallback, token counts and resume, exactly."""

import json
import re

import pytest

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.backends import ChatBackend, ChatReply
from leanlm.sift.pipeline import Sift, SiftItem

INPUT_TOKENS, OUTPUT_TOKENS = 7, 3  # every scripted reply counts these


class ScriptedBackend(ChatBackend):
    """Reply by prompt kind and item id (the question text "Q<n>"), and log every call."""

    def __init__(self, script):
        self.script = script  # (kind, item id) -> reply text
        self.calls: list[tuple[str, str]] = []

    def chat(self, requests):
        replies = []
        for request in requests:
            text = request.messages[-1]["content"]
            match = re.search(r"Q\d+", text)  # a prompt built from an empty sticker names no item
            kind, item = _kind(text), match.group() if match else ""
            self.calls.append((kind, item))
            replies.append(ChatReply(self.script(kind, item), INPUT_TOKENS, OUTPUT_TOKENS, "stop"))
        return replies


def _kind(text: str) -> str:
    if "A solution of it" in text:
        return "inverse"
    if "Compare the sticker" in text:
        return "refine"
    if "Write a sticker" in text:
        return "sticker"
    if "Solve the problem these facts describe" in text:
        return "alone"
    if "Key facts of the problem" in text:
        return "both"
    return "zero_shot"


def script_agreeing_at(stages: dict[str, int]):
    """Items agree at the given stage number (1, 2, 3), or never (0): the sticker-alone prediction is then wrong."""
    sticker_round = {}

    def reply(kind: str, item: str) -> str:
        if kind in ("sticker", "refine"):
            sticker_round[item] = sticker_round.get(item, 0) + 1
            return f"<sticker>1. facts of {item}\nQuestion: what is {item}?</sticker>"
        if kind == "inverse":
            return f"1. facts of {item}\nQuestion: {item}?"
        if kind == "both":
            return "so \\boxed{42}"
        if kind == "alone":
            stage = sticker_round[item]  # the stage 1 sticker, then one refined sticker per stage
            return "\\boxed{42}" if stage == stages[item] else "\\boxed{7}"
        return "\\boxed{5}"  # zero-shot fallback

    return reply


ITEMS = [SiftItem("a", "Q1", "42"), SiftItem("b", "Q2", "42"), SiftItem("c", "Q3", "42"), SiftItem("d", "Q4", "42")]
AGREE_AT = {"Q1": 1, "Q2": 2, "Q3": 3, "Q4": 0}
CALLS = {"a": 3, "b": 6, "c": 10, "d": 11}  # stage 1: 3 calls; stage 2: 3 more; stage 3: 4 more; fallback: 1


def test_stage_transitions_and_fallback():
    records = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS)

    assert [r.stage for r in records] == ["stage1", "stage2", "stage3", "fallback"]
    assert [r.answer for r in records] == ["42", "42", "42", "5"]
    assert [r.correct for r in records] == [True, True, True, False]


def test_tokens_count_every_call():
    records = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS)

    for record in records:
        assert record.calls == CALLS[record.id]
        assert record.input_tokens == INPUT_TOKENS * CALLS[record.id]
        assert record.output_tokens == OUTPUT_TOKENS * CALLS[record.id]


def test_tokens_by_stage_split_every_call():
    records = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS)

    per_call = INPUT_TOKENS + OUTPUT_TOKENS
    calls_by_stage = {  # stage 1: sticker + 2 predictions; stage 2: refine + 2; stage 3: inverse + refine + 2
        "a": {"stage1": 3},
        "b": {"stage1": 3, "stage2": 3},
        "c": {"stage1": 3, "stage2": 3, "stage3": 4},
        "d": {"stage1": 3, "stage2": 3, "stage3": 4, "fallback": 1},
    }
    for record in records:
        assert record.tokens_by_stage == {stage: calls * per_call for stage, calls in calls_by_stage[record.id].items()}
        assert sum(record.tokens_by_stage.values()) == record.input_tokens + record.output_tokens


def test_stages_batch_only_open_items():
    backend = ScriptedBackend(script_agreeing_at(AGREE_AT))
    Sift(backend).run(ITEMS)

    refined_items = {item for kind, item in backend.calls if kind == "refine"}
    assert refined_items == {"Q2", "Q3", "Q4"}  # Q1 was resolved at stage 1
    assert {item for kind, item in backend.calls if kind == "inverse"} == {"Q3", "Q4"}
    assert [item for kind, item in backend.calls if kind == "zero_shot"] == ["Q4"]


def test_records_keep_stickers_and_predictions():
    record = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS)[1]

    assert record.stickers["stage1"] == "1. facts of Q2\nQuestion: what is Q2?"
    assert record.predictions["stage1"] == {"sticker": "7", "question_and_sticker": "42"}
    assert record.predictions["stage2"] == {"sticker": "42", "question_and_sticker": "42"}


def test_resume_skips_finished_items(tmp_path):
    out = tmp_path / "sift.jsonl"
    first = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS[:2], out)

    backend = ScriptedBackend(script_agreeing_at(AGREE_AT))
    records = Sift(backend).run(ITEMS, out)

    assert {item for _, item in backend.calls} == {"Q3", "Q4"}
    assert [r.id for r in records] == ["a", "b", "c", "d"]
    assert records[0] == first[0]
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["a", "b", "c", "d"]


def test_resume_skips_cut_last_line(tmp_path):
    out = tmp_path / "sift.jsonl"
    Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS[:1], out)
    out.write_text(out.read_text() + '{"id": "b", "quest')  # a write cut short

    backend = ScriptedBackend(script_agreeing_at(AGREE_AT))
    Sift(backend).run(ITEMS[:2], out)

    assert {item for _, item in backend.calls} == {"Q2"}


class FailsAtKind(ScriptedBackend):
    """A scripted backend that raises on the first request of one prompt kind, as an interrupt would."""

    def __init__(self, script, kind: str):
        super().__init__(script)
        self.kind = kind

    def chat(self, requests):
        if any(_kind(request.messages[-1]["content"]) == self.kind for request in requests):
            raise KeyboardInterrupt
        return super().chat(requests)


def test_resume_skips_finished_stages(tmp_path):
    out = tmp_path / "new-directory" / "sift.jsonl"  # the state is saved before any record is
    straight = Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run(ITEMS)
    script = script_agreeing_at(AGREE_AT)  # one script for both runs: it counts each item's sticker rounds
    with pytest.raises(KeyboardInterrupt):  # stops at stage 3's first call, after stages 1 and 2
        Sift(FailsAtKind(script, "inverse")).run(ITEMS, out)

    backend = ScriptedBackend(script)
    resumed = Sift(backend).run(ITEMS, out)

    assert {kind for kind, _ in backend.calls} == {"inverse", "refine", "alone", "both", "zero_shot"}
    assert {item for _, item in backend.calls} == {"Q3", "Q4"}
    assert [r.stage for r in resumed] == [r.stage for r in straight]
    assert [r.tokens_by_stage for r in resumed] == [r.tokens_by_stage for r in straight]
    assert not (tmp_path / "new-directory" / "sift.jsonl.open.json").exists()


def test_open_state_of_other_items_is_ignored(tmp_path):
    out = tmp_path / "sift.jsonl"
    with pytest.raises(KeyboardInterrupt):
        Sift(FailsAtKind(script_agreeing_at(AGREE_AT), "refine")).run(ITEMS[2:], out)  # saves after stage 1

    backend = ScriptedBackend(script_agreeing_at(AGREE_AT))
    records = Sift(backend).run(ITEMS[1:], out)  # another item set: b, c, d are open

    assert ("sticker", "Q2") in backend.calls
    assert ("sticker", "Q3") in backend.calls
    assert [r.stage for r in records] == ["stage2", "stage3", "fallback"]


def test_duplicate_ids_rejected():
    with pytest.raises(InvalidArgumentError, match="appears twice"):
        Sift(ScriptedBackend(script_agreeing_at(AGREE_AT))).run([SiftItem("a", "Q1"), SiftItem("a", "Q2")])


def test_missing_sticker_never_resolves():
    """A reply with no sticker block cannot reach consensus, even when both predictions agree."""

    def reply(kind: str, item: str) -> str:
        if kind in ("sticker", "refine", "inverse"):
            return "I will just solve it: the answer is 42."
        return "\\boxed{42}" if kind in ("alone", "both") else "\\boxed{41}"

    backend = ScriptedBackend(reply)
    record = Sift(backend).run([SiftItem("a", "Q1", "42")])[0]

    assert record.stickers["stage1"] is None
    assert record.stage == "fallback"
    assert record.answer == "41"
    assert "alone" not in {kind for kind, _ in backend.calls}  # no facts, so no sticker-alone prediction
    assert record.calls == 8  # per stage: sticker and question + sticker (stage 3 two stickers); then the fallback


def test_unformatted_sticker_reply_is_kept():
    scripted = script_agreeing_at(AGREE_AT)

    def script(kind, item):
        if kind == "alone" and not item:  # a prompt built from the missing sticker names no item
            return "\\boxed{7}"
        reply = scripted(kind, item)  # also counts the item's sticker rounds
        return "I will just solve it: \\boxed{1}" if kind == "sticker" else reply

    record = Sift(ScriptedBackend(script)).run(ITEMS[:1])[0]

    assert record.stickers["stage1"] is None
    assert record.unformatted_stickers["stage1"] == "I will just solve it: \\boxed{1}"
    assert "stage2" not in record.unformatted_stickers  # the refined sticker was in format


def test_state_saved_before_any_item_finishes(tmp_path):
    out = tmp_path / "new-directory" / "sift.jsonl"
    with pytest.raises(KeyboardInterrupt):  # Q4 never agrees, so nothing is finished when stage 2 starts
        Sift(FailsAtKind(script_agreeing_at(AGREE_AT), "refine")).run(ITEMS[3:], out)

    assert json.loads((tmp_path / "new-directory" / "sift.jsonl.open.json").read_text())["stages"] == ["stage1"]
    assert not out.exists()
