"""Write a split Llama MLP into the stock transformers GraniteMoe layout, so the result needs no leanlm to run.

Why GraniteMoe (read from transformers 5.25, `models/granitemoe/modeling_granitemoe.py`): its router takes the
top-k of the raw logits W x and applies the softmax over only the K chosen logits, and its decoder layer is
a Llama layer plus four multipliers that can be set to Llama's behaviour:
attention_multiplier = head_dim ** -0.5 (Llama's attention scaling), and embedding_multiplier,
residual_multiplier and logits_scaling all 1.

Each token's MLP output is made the plain sum of its K chosen experts, by two exact scalings:

* The router weight is the fitted weight times ROUTER_SCALE = 2**-40. A power-of-two scale changes no bit of
  the logits' mantissas, so the top-k choice is the fitted router's. The K chosen logits then differ by about
  1e-10, far below float32's resolution around exp(0) = 1, so the softmax over them returns exactly 1/K.
* Each expert's down projection is multiplied by K, which cancels the 1/K. Both are exact for K a power of
  two. For other K the product K * (1/K) can be off by one rounding step, about 1e-7 relative.

With K = E every expert runs and the output equals the dense MLP up to the order of summation.

Notes:
    The scaled router weights (about 1e-12 and smaller) are representable in float32 and bfloat16, but
    float16 flushes them to zero, after which every logit ties. Run converted checkpoints in float32 or
    bfloat16.

Shapes: E experts, K top-k, C model dim, I intermediate size, G = I / E neurons per expert.
"""

import logging

import torch
from transformers import GraniteMoeConfig, GraniteMoeForCausalLM, PreTrainedModel

from leanlm.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

ROUTER_SCALE = 2.0**-40


def check_top_k(top_k: int, experts: int) -> None:
    """Raise InvalidArgumentError unless 1 <= `top_k` <= `experts`."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= experts:
        raise InvalidArgumentError(f"top_k must be an integer from 1 to the number of experts ({experts}), got {top_k!r}")


def granite_config(dense_config, experts: int, top_k: int) -> GraniteMoeConfig:
    """Return a GraniteMoe config that reproduces a Llama config with its MLP split into `experts` experts."""
    head_dim = getattr(dense_config, "head_dim", None) or dense_config.hidden_size // dense_config.num_attention_heads
    return GraniteMoeConfig(
        vocab_size=dense_config.vocab_size,
        hidden_size=dense_config.hidden_size,
        intermediate_size=dense_config.intermediate_size // experts,  # per expert
        num_hidden_layers=dense_config.num_hidden_layers,
        num_attention_heads=dense_config.num_attention_heads,
        num_key_value_heads=dense_config.num_key_value_heads,
        # GraniteMoeConfig has no head_dim field, but its attention and rotary embedding read one when present
        head_dim=head_dim,
        hidden_act=dense_config.hidden_act,
        max_position_embeddings=dense_config.max_position_embeddings,
        initializer_range=dense_config.initializer_range,
        rms_norm_eps=dense_config.rms_norm_eps,
        pad_token_id=dense_config.pad_token_id,
        bos_token_id=dense_config.bos_token_id,
        eos_token_id=dense_config.eos_token_id,
        tie_word_embeddings=dense_config.tie_word_embeddings,
        rope_parameters=dict(dense_config.rope_parameters),
        attention_bias=dense_config.attention_bias,
        attention_dropout=dense_config.attention_dropout,
        attention_multiplier=head_dim**-0.5,
        embedding_multiplier=1.0,
        residual_multiplier=1.0,
        logits_scaling=1.0,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        output_router_logits=False,
    )


def build_granite(
    dense: PreTrainedModel, groups: list[torch.Tensor], routers: list[torch.Tensor], top_k: int
) -> GraniteMoeForCausalLM:
    """Return a GraniteMoe model with the dense model's weights, its MLPs split by `groups`, routed by `routers`.

    `groups[l]` is a LongTensor [E, G] of neuron indices for layer l, and `routers[l]` the fitted router
    weight [E, C]. The dense model is left unchanged: every weight is copied.
    """
    experts = groups[0].shape[0]
    check_top_k(top_k, experts)
    config = granite_config(dense.config, experts, top_k)
    dtype = dense.model.embed_tokens.weight.dtype
    with torch.device("meta"):
        moe = GraniteMoeForCausalLM(config)
    moe.to_empty(device=dense.device)
    moe.to(dtype)

    with torch.no_grad():
        moe.model.embed_tokens.weight.copy_(dense.model.embed_tokens.weight)
        moe.model.norm.weight.copy_(dense.model.norm.weight)
        for dense_layer, layer, neurons, router in zip(dense.model.layers, moe.model.layers, groups, routers, strict=True):
            layer.self_attn.load_state_dict(dense_layer.self_attn.state_dict())
            layer.input_layernorm.load_state_dict(dense_layer.input_layernorm.state_dict())
            layer.post_attention_layernorm.load_state_dict(dense_layer.post_attention_layernorm.state_dict())
            _copy_experts(dense_layer.mlp, layer.block_sparse_moe, neurons, router, top_k)
        if config.tie_word_embeddings:
            moe.tie_weights()
        else:
            moe.lm_head.weight.copy_(dense.lm_head.weight)

    # to_empty left every tensor uninitialised: the weights are copied above, the rotary buffers are rebuilt here
    moe.model.rotary_emb = type(moe.model.rotary_emb)(config=config).to(dense.device)
    moe.generation_config = dense.generation_config
    return moe.eval()


def _copy_experts(mlp, block, neurons: torch.Tensor, router: torch.Tensor, top_k: int) -> None:
    gate = mlp.gate_proj.weight[neurons]  # [E, G, C]
    up = mlp.up_proj.weight[neurons]  # [E, G, C]
    down = mlp.down_proj.weight[:, neurons].permute(1, 0, 2)  # [C, E, G] -> [E, C, G]
    block.experts.gate_up_proj.copy_(torch.cat([gate, up], dim=1))  # [E, 2G, C]
    block.experts.down_proj.copy_(down * top_k)
    block.router.weight.copy_(router.to(block.router.weight) * ROUTER_SCALE)


def set_top_k(model: GraniteMoeForCausalLM, top_k: int) -> None:
    """Change in place how many experts each token uses, keeping each token's output the sum of its experts.

    Multiplies every down projection by new_k / old_k and updates the routers and the config. The scaling is
    exact when the ratio is a power of two; otherwise each change can add one rounding step.
    """
    if not isinstance(model, GraniteMoeForCausalLM):
        raise InvalidArgumentError(f"set_top_k needs a converted GraniteMoeForCausalLM, got {type(model).__name__}")
    config = model.config
    check_top_k(top_k, config.num_local_experts)
    old_top_k = config.num_experts_per_tok
    if top_k == old_top_k:
        return
    with torch.no_grad():
        for layer in model.model.layers:
            block = layer.block_sparse_moe
            block.experts.down_proj.mul_(top_k / old_top_k)
            block.router.top_k = top_k
    config.num_experts_per_tok = top_k
    model.num_experts_per_tok = top_k
    logger.debug("top-k changed from %d to %d", old_top_k, top_k)
