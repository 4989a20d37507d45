"""A tiny random-weight Llama and a byte-level BPE tokenizer trained in memory, for the eval tests."""

from collections.abc import Iterator
from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from leanlm.data import prose_document
from leanlm.eval import passkey

VOCAB_SIZE = 1000
PAD = "<|pad|>"
END = "<|end|>"


def passkey_template_text() -> str:
    return passkey.INSTRUCTION + passkey.NEEDLE.format(key="0") + passkey.QUESTION


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the Gutenberg story and the passkey templates, padded on the left.

    With the templates in the training text, the passkey prompt overhead (instruction, needle and
    question) is about 80 tokens instead of about 110, which leaves room for prose at short lengths.
    """
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    paragraphs = prose_document("gutenberg-2889").split("\n\n")
    core.train_from_iterator(paragraphs + [passkey_template_text()] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=END,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="session")
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def windows(model: LlamaForCausalLM) -> torch.Tensor:
    """Six random token windows of 24 tokens, shape [6, 24]."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, model.config.vocab_size, (6, 24), generator=generator)


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
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test off the network and out of the real leanlm cache."""
    monkeypatch.setenv("LEANLM_HOME", str(tmp_path / "leanlm-home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads HF_HUB_OFFLINE once at import, so the environment variable alone is too late.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
