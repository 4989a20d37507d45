"""The gate: keep logits per token and KV head from the hidden states entering one attention layer.

Each gate is one small causal self-attention over the prompt (Hkv heads of `gate_dim` features), so a
token's score depends on the tokens before it: whether it repeats earlier text, starts a sentence, and so
on. The token's own value is added to the attention output, then a per-head dot product gives the logit.

Shapes: B batch, T tokens, C model dim, Hkv KV heads, d gate head dim, L layers.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


class AttentionGate(nn.Module):
    """Keep logits [B, Hkv, T] of one layer, from its attention input [B, T, C]."""

    def __init__(self, hidden_size: int, kv_heads: int, gate_dim: int, initial_keep: float = 0.5):
        super().__init__()
        self.kv_heads, self.gate_dim = kv_heads, gate_dim
        self.qkv = nn.Linear(hidden_size, 3 * kv_heads * gate_dim, bias=False)
        self.score = nn.Parameter(torch.randn(kv_heads, gate_dim) / math.sqrt(gate_dim))
        self.bias = nn.Parameter(torch.full((kv_heads,), math.log(initial_keep / (1 - initial_keep))))

    def forward(self, hidden: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        B, T, _ = hidden.shape
        q, k, v = self.qkv(hidden.to(self.qkv.weight.dtype)).split(self.kv_heads * self.gate_dim, dim=-1)
        q, k, v = (x.view(B, T, self.kv_heads, self.gate_dim).transpose(1, 2) for x in (q, k, v))  # [B, Hkv, T, d]

        # causal attention over the prompt, with left padding hidden from every query
        if real is None:
            context = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            causal = torch.ones((T, T), dtype=torch.bool, device=hidden.device).tril()
            mask = causal & real[:, None, None, :]  # [B, 1, T, T]
            mask = mask | torch.eye(T, dtype=torch.bool, device=hidden.device)  # padding queries attend to themselves
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        features = context + v  # [B, Hkv, T, d]

        return (features * self.score[None, :, None, :]).sum(dim=-1) + self.bias[None, :, None]  # [B, Hkv, T]


class AttentionGates(nn.Module):
    """One `AttentionGate` per layer."""

    def __init__(self, layers: int, hidden_size: int, kv_heads: int, gate_dim: int = 16, initial_keep: float = 0.5):
        super().__init__()
        self.shape = (layers, hidden_size, kv_heads, gate_dim)
        self.gates = nn.ModuleList(AttentionGate(hidden_size, kv_heads, gate_dim, initial_keep) for _ in range(layers))

    def forward(self, layer: int, hidden: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        return self.gates[layer](hidden, real)
