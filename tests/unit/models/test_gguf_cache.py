"""Tests of the GGUF conversion cache: header check, fingerprint, one conversion per file, failure cleanup."""

import os
import re
import threading
import time
from pathlib import Path

import pytest

from leanlm.errors import ModelFileError
from leanlm.models import cached_models, gguf_cache
from leanlm.models.gguf_cache import FINGERPRINT_BLOCK, check_gguf_header, converted_dir, gguf_fingerprint


def write_gguf(path: Path, body: bytes = b"\x03\x00\x00\x00" + bytes(range(200))) -> Path:
    """Write a file that starts with the GGUF magic but whose body is not a valid GGUF model."""
    path.write_bytes(b"GGUF" + body)
    return path


class FakeConvert:
    """Stand-in for `gguf_cache._convert` that records calls and publishes the target by a rename."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls: list[tuple[Path, Path]] = []
        self.delay = delay
        self.error = error
        self._lock = threading.Lock()

    def __call__(self, gguf: Path, target: Path) -> None:
        with self._lock:
            self.calls.append((gguf, target))
        time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        staging = target.with_name(f".tmp-{target.name}-fake")
        staging.mkdir()
        (staging / "config.json").write_text("{}")
        os.replace(staging, target)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_header_rejects_other_magic(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"PK\x03\x04 a zip file, not a model")

    with pytest.raises(ModelFileError) as caught:
        check_gguf_header(path)

    assert str(path) in str(caught.value)
    assert "not a GGUF file" in str(caught.value)


def test_header_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")

    with pytest.raises(ModelFileError, match="not a GGUF file"):
        check_gguf_header(path)


def test_header_accepts_magic(tmp_path: Path) -> None:
    check_gguf_header(write_gguf(tmp_path / "model.gguf"))


def test_fingerprint_stable_for_same_content(tmp_path: Path) -> None:
    first = write_gguf(tmp_path / "a.gguf")
    second = write_gguf(tmp_path / "b.gguf")

    assert gguf_fingerprint(first) == gguf_fingerprint(first)
    assert gguf_fingerprint(first) == gguf_fingerprint(second)


def test_fingerprint_is_16_hex_chars(tmp_path: Path) -> None:
    fingerprint = gguf_fingerprint(write_gguf(tmp_path / "a.gguf"))

    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint)


@pytest.mark.parametrize("index", [0, -1], ids=["first-byte", "last-byte"])
def test_fingerprint_changes_with_one_byte(tmp_path: Path, index: int) -> None:
    original = write_gguf(tmp_path / "original.gguf")
    data = bytearray(original.read_bytes())
    data[index] ^= 0xFF
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(bytes(data))

    assert gguf_fingerprint(changed) != gguf_fingerprint(original)


def test_fingerprint_changes_with_size(tmp_path: Path) -> None:
    original = write_gguf(tmp_path / "original.gguf")
    longer = tmp_path / "longer.gguf"
    longer.write_bytes(original.read_bytes() + b"\x00")

    assert gguf_fingerprint(longer) != gguf_fingerprint(original)


@pytest.mark.parametrize("offset", [FINGERPRINT_BLOCK - 1, 2 * FINGERPRINT_BLOCK + 10], ids=["head", "tail"])
def test_fingerprint_large_file_ends(tmp_path: Path, offset: int) -> None:
    size = 2 * FINGERPRINT_BLOCK + 1024 * 1024
    data = bytearray(size)
    data[:4] = b"GGUF"
    original = tmp_path / "original.gguf"
    original.write_bytes(bytes(data))
    data[offset] = 1
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(bytes(data))

    assert gguf_fingerprint(changed) != gguf_fingerprint(original)


def test_fingerprint_ignores_large_file_middle(tmp_path: Path) -> None:
    # Only the size and the first and last FINGERPRINT_BLOCK bytes are hashed, so by design a change
    # in the middle of a large file keeps the fingerprint.
    size = 2 * FINGERPRINT_BLOCK + 1024 * 1024
    data = bytearray(size)
    data[:4] = b"GGUF"
    original = tmp_path / "original.gguf"
    original.write_bytes(bytes(data))
    data[FINGERPRINT_BLOCK + 512 * 1024] = 1
    changed = tmp_path / "changed.gguf"
    changed.write_bytes(bytes(data))

    assert gguf_fingerprint(changed) == gguf_fingerprint(original)


def test_converted_dir_names_target(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf")
    fake = FakeConvert()
    monkeypatch.setattr(gguf_cache, "_convert", fake)

    target = converted_dir(gguf, home)

    assert target == home / "models" / f"tiny-model-{gguf_fingerprint(gguf)}"
    assert target.is_dir()
    assert fake.calls == [(gguf, target)]


def test_converted_dir_converts_once(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf")
    fake = FakeConvert()
    monkeypatch.setattr(gguf_cache, "_convert", fake)

    first = converted_dir(gguf, home)
    second = converted_dir(gguf, home)

    assert second == first
    assert len(fake.calls) == 1


def test_converted_dir_new_content_converts(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf")
    fake = FakeConvert()
    monkeypatch.setattr(gguf_cache, "_convert", fake)

    first = converted_dir(gguf, home)
    write_gguf(gguf, body=b"\x03\x00\x00\x00 a re-quantised file")
    second = converted_dir(gguf, home)

    assert second != first
    assert len(fake.calls) == 2


def test_converted_dir_rejects_bad_magic(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"not a gguf file at all")
    fake = FakeConvert()
    monkeypatch.setattr(gguf_cache, "_convert", fake)

    with pytest.raises(ModelFileError, match="not a GGUF file"):
        converted_dir(path, home)

    assert fake.calls == []


def test_concurrent_calls_convert_once(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf")
    fake = FakeConvert(delay=0.3)  # long enough that the second thread arrives while the first converts
    monkeypatch.setattr(gguf_cache, "_convert", fake)
    start = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(converted_dir(gguf, home))
        except BaseException as err:  # collected here and checked by the asserts below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(results) == 2
    assert results[0] == results[1]
    assert len(fake.calls) == 1


def test_failed_conversion_leaves_nothing(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gguf = write_gguf(tmp_path / "tiny-model.gguf")
    target = home / "models" / f"tiny-model-{gguf_fingerprint(gguf)}"
    failing = FakeConvert(error=ModelFileError("conversion failed in a test"))
    monkeypatch.setattr(gguf_cache, "_convert", failing)

    with pytest.raises(ModelFileError, match="conversion failed in a test"):
        converted_dir(gguf, home)

    assert not target.exists()
    assert cached_models(home) == []

    working = FakeConvert()
    monkeypatch.setattr(gguf_cache, "_convert", working)

    assert converted_dir(gguf, home) == target
    assert len(working.calls) == 1


def test_real_convert_wraps_reader_error(tmp_path: Path, home: Path) -> None:
    # The GGUF reader rejects this file while parsing its header, so no weights are ever dequantised.
    gguf = write_gguf(tmp_path / "garbage.gguf", body=b"\xff\xff\xff\xff" + bytes(64))
    models = home / "models"

    with pytest.raises(ModelFileError) as caught:
        converted_dir(gguf, home)

    assert str(gguf) in str(caught.value)
    assert caught.value.__cause__ is not None
    leftovers = [path.name for path in models.iterdir() if path.is_dir()]
    assert leftovers == []
    assert cached_models(home) == []


def test_cached_models_lists_conversions(tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gguf_cache, "_convert", FakeConvert())
    target = converted_dir(write_gguf(tmp_path / "tiny-model.gguf"), home)
    (home / "models" / ".tmp-unfinished").mkdir()

    records = cached_models(home)

    assert records == [{"name": target.name, "path": str(target), "bytes": len("{}")}]


def test_cached_models_without_directory(tmp_path: Path) -> None:
    assert cached_models(tmp_path / "never-created") == []
