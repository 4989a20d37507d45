"""A tiny random-weight Llama and a byte-level BPE tokenizer trained in memory, for the MoE conversion tests.

Shapes: L = 2 layers, C = 64 model dim, I = 128 intermediate size, vocabulary of 320 tokens.
"""

from collections.abc import Iterator

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from leanlm.data import prose_documents
from leanlm.models.loader import LoadedModel

VOCAB_SIZE = 320
INTERMEDIATE_SIZE = 128
FINGERPRINT = "tiny-llama-moe"


def build_llama(*, tied: bool = True, seed: int = 0) -> LlamaForCausalLM:
    """Build a random fp32 Llama in eval mode: 2 layers, 4 query heads sharing 2 KV heads of width 16."""
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=INTERMEDIATE_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        tie_word_embeddings=tied,
        pad_token_id=0,
        bos_token_id=None,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of 320 tokens on the start of the calibration split."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=["<pad>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([prose_documents("calibration")[0][:20_000]], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", padding_side="left",
        clean_up_tokenization_spaces=False,
    )


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run on one thread, because the tiny matrices gain nothing from more and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture
def loaded(tokenizer: PreTrainedTokenizerFast) -> LoadedModel:
    return LoadedModel(model=build_llama(), tokenizer=tokenizer, name="tiny-llama", fingerprint=FINGERPRINT)


@pytest.fixture(scope="module")
def token_ids() -> torch.Tensor:
    """A batch of 2 token sequences [B = 2, T = 20]."""
    return torch.randint(0, VOCAB_SIZE, (2, 20), generator=torch.Generator().manual_seed(3))
