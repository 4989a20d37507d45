"""Builders shared by the MatryoshkaKV tests: a tiny random Llama and a few training steps on projections."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from leanlm.kv.matryoshka.projections import MatryoshkaProjections

VOCAB_SIZE = 100
HEAD_DIM = 16
ADAM_STEPS = 5


def build_llama(layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """Build a random fp32 Llama in eval mode with 4 query heads sharing 2 KV heads of width 16."""
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=HEAD_DIM,
        max_position_embeddings=256,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def orthogonality_error(bases: torch.Tensor) -> float:
    """Return max |U^T U - I| over all [D, D] bases in [..., D, D]."""
    identity = torch.eye(bases.shape[-1]).expand_as(bases)
    return (bases.transpose(-1, -2) @ bases - identity).abs().max().item()


def train_randomly(projections: MatryoshkaProjections) -> None:
    """Take a few Adam steps on a random linear loss, which moves every skew parameter."""
    generator = torch.Generator().manual_seed(7)
    key_target = torch.randn(projections.key_basis0.shape, generator=generator)
    value_target = torch.randn(projections.value_basis0.shape, generator=generator)
    optimizer = torch.optim.Adam(projections.parameters(), lr=0.05)
    for _ in range(ADAM_STEPS):
        key_basis, value_basis = projections.bases()
        loss = (key_basis * key_target).sum() + (value_basis * value_target).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
