"""The real default model, loaded once per test session (converted from its GGUF on first use)."""

import pytest

from leanlm.models import DEFAULT_MODEL, LoadedModel, load_model


@pytest.fixture(scope="session")
def default_model() -> LoadedModel:
    return load_model(DEFAULT_MODEL)
