"""A tiny random-weight Llama, its PCA bases and a `LoadedModel` wrapper, for the MatryoshkaKV tests.

Shapes: L = 2 layers, Hkv = 2 KV heads, D = 16 head dim, vocabulary of 100 tokens.
"""

from collections.abc import Iterator

import pytest
import torch
from transformers import LlamaForCausalLM

from leanlm.kv.matryoshka.pca import PCABases, collect_statistics, pca_bases
from leanlm.models.loader import LoadedModel

from .helpers import VOCAB_SIZE, build_llama

FINGERPRINT = "tiny-llama-0"


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run on one thread, because the tiny matrices gain nothing from more and the machine is shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    return build_llama()


@pytest.fixture(scope="module")
def loaded(model: LlamaForCausalLM) -> LoadedModel:
    return LoadedModel(model=model, tokenizer=None, name="tiny-llama", fingerprint=FINGERPRINT)


@pytest.fixture(scope="module")
def windows() -> torch.Tensor:
    """Calibration token windows [N = 3, T = 24]."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB_SIZE, (3, 24), generator=generator)


@pytest.fixture(scope="module")
def pca(model: LlamaForCausalLM, windows: torch.Tensor) -> PCABases:
    return pca_bases(collect_statistics(model, windows))
