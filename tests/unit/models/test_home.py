"""Tests of leanlm_home: where the cache directory is, and how an unusable one is reported."""

from pathlib import Path

import pytest

from leanlm.errors import CacheDirError, LeanLMError
from leanlm.home import HOME_ENV, leanlm_home


def test_home_honours_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nested" / "leanlm"
    monkeypatch.setenv("LEANLM_HOME", str(target))

    home = leanlm_home()

    assert home == target
    assert home.is_dir()


def test_home_leaves_no_write_check_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEANLM_HOME", str(tmp_path / "home"))

    home = leanlm_home()

    assert list(home.iterdir()) == []


def test_home_expands_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("LEANLM_HOME", "~/custom-home")

    assert leanlm_home() == tmp_path / "custom-home"


def test_home_default_under_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LEANLM_HOME")

    home = leanlm_home()

    assert home == tmp_path / ".cache" / "leanlm"
    assert home.is_dir()


def test_home_under_regular_file_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, where permission bits do not stop writes, but no one can create a
    # directory inside a regular file.
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    target = blocker / "sub"
    monkeypatch.setenv("LEANLM_HOME", str(target))

    with pytest.raises(CacheDirError) as caught:
        leanlm_home()

    message = str(caught.value)
    assert str(target) in message
    assert HOME_ENV in message
    assert isinstance(caught.value, LeanLMError)


def test_home_is_regular_file_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "afile"
    target.write_text("not a directory")
    monkeypatch.setenv("LEANLM_HOME", str(target))

    with pytest.raises(CacheDirError, match="LEANLM_HOME") as caught:
        leanlm_home()

    assert str(target) in str(caught.value)
