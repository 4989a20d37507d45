"""The scripted chat server for the HTTP backend tests, and a tiny Llama with a chat template for the local one."""

from collections.abc import Iterator

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from leanlm.models.loader import LoadedModel
from tests.unit.runtime.conftest import CHAT_TEMPLATE, build_tokenizer, single_torch_thread  # noqa: F401

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
    """A two-layer random-weight Llama whose EOS, BOS and padding ids match the tokenizer."""
    config = LlamaConfig(
        vocab_size=len(chat_tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=chat_tokenizer.bos_token_id,
        eos_token_id=chat_tokenizer.eos_token_id,
        pad_token_id=chat_tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    llama = LlamaForCausalLM(config).eval()
    llama.generation_config.eos_token_id = chat_tokenizer.eos_token_id
    llama.generation_config.pad_token_id = chat_tokenizer.pad_token_id
    return LoadedModel(model=llama, tokenizer=chat_tokenizer, name="tiny-chat-llama", fingerprint="tiny-chat-llama-0")
