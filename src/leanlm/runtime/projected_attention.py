"""Attention over a `ProjectedCache`: scores and values computed in each KV head's projected space.

With k' = (k - mu_K) U_K and v' = (v - mu_V) U_V for the first R columns of an orthonormal U:
- logits: q . k ~= (q U_K) . k' + q . mu_K. The second term is the same for every key of a query, so
  softmax cancels it and it is never computed;
- output: sum_j p_j v_j ~= (sum_j p_j v'_j) U_V^T + mu_V, since the weights p_j sum to one.
At full rank both are exact. Each KV head is one SDPA call with its G query heads, on R-wide features.

Shapes: B batch, H query heads, Hkv KV heads, G = H / Hkv, Tq query tokens, T cached tokens, D head dim,
R rank of one head.
"""

import torch
import torch.nn.functional as F

from leanlm.runtime.projected_cache import ProjectedKV


def projected_attention(
    query: torch.Tensor, kv: ProjectedKV, mask: torch.Tensor | None, is_causal: bool, scale: float
) -> torch.Tensor:
    """Attend query [B, H, Tq, D] over projected keys and values; return [B, Tq, H, D].

    `mask` is boolean [B, 1 or Hkv, Tq, T] (True: visible) or None.
    """
    B, H, Tq, D = query.shape
    heads = len(kv.keys)
    group = H // heads
    projection = kv.projection

    outputs = []
    for h in range(heads):
        # project the group's queries onto this head's key basis
        q = query[:, h * group : (h + 1) * group] @ projection.key_bases[h].to(query.dtype)  # [B, G, Tq, R_K]
        k = kv.keys[h].unsqueeze(1)  # [B, 1, T, R_K]
        v = kv.values[h].unsqueeze(1)  # [B, 1, T, R_V]
        head_mask = None if mask is None else mask[:, h : h + 1] if mask.shape[1] > 1 else mask  # [B, 1, Tq, T]

        # attention in the projected space, then back to D features
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=head_mask, is_causal=is_causal, scale=scale, enable_gqa=True
        )  # [B, G, Tq, R_V]
        out = out @ projection.value_bases[h].T.to(out.dtype) + projection.value_means[h].to(out.dtype)  # [B, G, Tq, D]
        outputs.append(out)

    attn = torch.cat(outputs, dim=1)  # [B, H, Tq, D]
    return attn.transpose(1, 2).contiguous()  # [B, Tq, H, D], as transformers' attention functions return
