"""Tiny random-weight CausalLMs of the five supported MoE block types, and a left-padded batch of two rows."""

import pytest
import torch
from transformers import (
    GraniteMoeConfig,
    GraniteMoeForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    OlmoeConfig,
    OlmoeForCausalLM,
    PreTrainedModel,
    Qwen2MoeConfig,
    Qwen2MoeForCausalLM,
    Qwen3MoeConfig,
    Qwen3MoeForCausalLM,
)

VOCAB_SIZE = 100
NUM_EXPERTS = 4
TOP_K = 2

# initializer_range 0.2 instead of the default 0.02, so the experts move the logits far more than the 1e-5
# tolerance of the equivalence tests and a routing mistake cannot hide
COMMON = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "initializer_range": 0.2,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
}

BUILDERS = {
    "mixtral": lambda: MixtralForCausalLM(
        MixtralConfig(intermediate_size=48, num_local_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K, **COMMON)
    ),
    # three decoder layers with a dense MLP in the middle one, so MoE layer 1 is decoder layer 2
    "qwen2_moe": lambda: Qwen2MoeForCausalLM(
        Qwen2MoeConfig(
            intermediate_size=48,
            moe_intermediate_size=24,
            shared_expert_intermediate_size=40,
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            norm_topk_prob=False,
            mlp_only_layers=[1],
            **(COMMON | {"num_hidden_layers": 3}),
        )
    ),
    "qwen3_moe": lambda: Qwen3MoeForCausalLM(
        Qwen3MoeConfig(
            intermediate_size=48,
            moe_intermediate_size=24,
            num_experts=NUM_EXPERTS,
            num_experts_per_tok=TOP_K,
            norm_topk_prob=True,
            head_dim=8,
            **COMMON,
        )
    ),
    "olmoe": lambda: OlmoeForCausalLM(
        OlmoeConfig(intermediate_size=24, num_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K, **COMMON)
    ),
    "granitemoe": lambda: GraniteMoeForCausalLM(
        GraniteMoeConfig(intermediate_size=24, num_local_experts=NUM_EXPERTS, num_experts_per_tok=TOP_K, **COMMON)
    ),
}
KINDS = sorted(BUILDERS)


def build_moe_model(kind: str, seed: int = 0) -> PreTrainedModel:
    """Build the tiny random-weight CausalLM of `kind` in eval mode, float32."""
    torch.manual_seed(seed)
    return BUILDERS[kind]().eval()


@pytest.fixture(scope="module", params=KINDS)
def moe_model(request) -> PreTrainedModel:
    return build_moe_model(request.param)


@pytest.fixture
def padded_batch() -> dict[str, torch.Tensor]:
    """Two rows of seven tokens; the second row is left-padded by three."""
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(3, VOCAB_SIZE, (2, 7), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, :3] = COMMON["pad_token_id"]
    attention_mask[1, :3] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask}
