"""The scripted chat server for the HTTP backend tests, and a tiny Llama with a chat template for the local one."""

from collections.abc import Iterator

import pytest
from transformers import PreTrainedTokenizerFast

from leanlm.models.loader import LoadedModel
from tests.unit.runtime.conftest import CHAT_TEMPLATE, build_llama, build_tokenizer, single_torch_thread  # noqa: F401

from .fake_server import FakeChatServer


@pytest.fixture
def server() -> Iterator[FakeChatServer]:
    fake = FakeChatServer()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def chat_tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer(CHAT_TEMPLATE)


@pytest.fixture(scope="session")
def tiny_chat_model(chat_tokenizer: PreTrainedTokenizerFast) -> LoadedModel:
    """The runtime tests' tiny Llama, wrapped as a loaded model."""
    llama = build_llama(chat_tokenizer)
    return LoadedModel(model=llama, tokenizer=chat_tokenizer, name="tiny-chat-llama", fingerprint="tiny-chat-llama-0")
