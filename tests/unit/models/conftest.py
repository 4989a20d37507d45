"""Fixtures for the model loading tests: an isolated leanlm home, no hub access, and a tiny saved model."""

from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "The ferry crosses the bay four times a day and waits at the pier when fog rolls in.",
    "A clockmaker keeps a drawer of springs, gears and tiny screws sorted by size.",
    "On market days the square fills with carts of apples, cheese and fresh bread.",
    "The old road climbs through pine woods and ends at a stone hut below the pass.",
]
UNKNOWN = "[UNK]"
END = "[END]"


def build_word_tokenizer() -> PreTrainedTokenizerFast:
    """Train a word-level tokenizer on `CORPUS`, with an end token but no pad token and right padding."""
    core = Tokenizer(models.WordLevel(unk_token=UNKNOWN))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=[UNKNOWN, END], show_progress=False)
    core.train_from_iterator(CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token=UNKNOWN, eos_token=END, padding_side="right")


def build_tiny_llama(vocab_size: int, eos_token_id: int) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=None,
        eos_token_id=eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    """Run torch on one thread while these tests run, restoring the previous count afterwards.

    The tiny model's matrices are too small to gain from threads. On the 2-core machine these tests were
    written on, one decode step of the tiny model took about 250 ms with 2 threads and about 1 ms with 1.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point `$LEANLM_HOME` and the hub cache into `tmp_path` and put the hub client in offline mode."""
    home = tmp_path / "leanlm-home"
    monkeypatch.setenv("LEANLM_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once at import, so the environment variable alone is too late.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return home


@pytest.fixture(scope="session")
def word_tokenizer() -> PreTrainedTokenizerFast:
    return build_word_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(word_tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return build_tiny_llama(len(word_tokenizer), word_tokenizer.eos_token_id)


@pytest.fixture(scope="session")
def saved_model_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_llama: LlamaForCausalLM, word_tokenizer: PreTrainedTokenizerFast
) -> Path:
    """A local Hugging Face directory of the tiny model. Tests that change files must copy it first."""
    directory = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama.save_pretrained(directory)
    word_tokenizer.save_pretrained(directory)
    return directory
