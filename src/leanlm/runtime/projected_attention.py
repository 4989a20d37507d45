"""Attention over a `ProjectedCache`: scores and values computed in each KV head's projected space.

With k' = (k - mu_K) U_K and v' = (v - mu_V) U_V for the first R columns of an orthonormal U:
- logits: q . k ~= (q U_K) . k' + q . mu_K. The second term is the same for every key of a query, so
  softmax cancels it and it is never computed;
- output: sum_j p_j v_j ~= (sum_j p_j v'_j) U_V^T + mu_V, since the weights p_j sum to one.
At full rank both are exact. Each KV head is one SDPA call with its G query heads, on R-wide features.

The implementation is registered with transformers under `PROJECTED_ATTENTION` the first time
`projected_attention_enabled` runs, and a model uses it only inside that context manager.

Shapes: B batch, H query heads, Hkv KV heads, G = H / Hkv, Tq query tokens, T cached tokens, D head dim,
R rank of one head.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from leanlm.runtime.projected_cache import ProjectedKV

PROJECTED_ATTENTION = "leanlm_projected"


def projected_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: ProjectedKV | torch.Tensor,
    value: ProjectedKV | torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """Attend over projected keys and values; plain tensors (no projected cache) go to SDPA unchanged."""
    if not isinstance(key, ProjectedKV):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    B, H, Tq, D = query.shape
    scale = scaling if scaling is not None else D**-0.5  # SDPA's default would use the rank, not D
    heads = len(key.keys)
    group = H // heads
    projection = key.projection
    is_causal = Tq > 1 and attention_mask is None

    outputs = []
    for h in range(heads):
        # project the group's queries onto this head's key basis
        q = query[:, h * group : (h + 1) * group] @ projection.key_bases[h].to(query.dtype)  # [B, G, Tq, R_K]
        k = key.keys[h].unsqueeze(1)  # [B, 1, T, R_K]
        v = key.values[h].unsqueeze(1)  # [B, 1, T, R_V]

        # attention in the projected space, then back to D features
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attention_mask, is_causal=is_causal, scale=scale, enable_gqa=True
        )  # [B, G, Tq, R_V]
        out = out @ projection.value_bases[h].T.to(out.dtype) + projection.value_means[h].to(out.dtype)  # [B, G, Tq, D]
        outputs.append(out)

    attn = torch.cat(outputs, dim=1)  # [B, H, Tq, D]
    return attn.transpose(1, 2).contiguous(), None  # [B, Tq, H, D], as transformers' attention functions return


def _register() -> None:
    if PROJECTED_ATTENTION not in AttentionInterface._global_mapping:
        AttentionInterface.register(PROJECTED_ATTENTION, projected_attention_forward)
        AttentionMaskInterface.register(PROJECTED_ATTENTION, sdpa_mask)


@contextmanager
def projected_attention_enabled(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Switch `model` to projected attention for the duration of the block, then restore its implementation."""
    _register()
    previous = model.config._attn_implementation
    model.set_attn_implementation(PROJECTED_ATTENTION)
    try:
        yield model
    finally:
        model.set_attn_implementation(previous)
