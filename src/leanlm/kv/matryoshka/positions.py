"""Position ids for calibration windows, spread over the model's whole context.

Keys are projected after RoPE, and RoPE turns each pair of features by an angle that grows with the
position. Calibration windows of a few hundred tokens at positions 0..T-1 barely turn the slow pairs, so
bases fitted there miss the directions those pairs reach deep into a long context. Attention depends only
on relative positions, so starting a window at a random offset leaves the model's outputs unchanged
while its keys cover the rotations of every position up to the context limit.
"""

import torch
from transformers import PreTrainedModel


def offset_positions(model: PreTrainedModel, tokens: int, generator: torch.Generator) -> torch.Tensor:
    """Return position ids [1, T] starting at a random offset that keeps the window inside the context."""
    limit = getattr(model.config, "max_position_embeddings", tokens) or tokens
    start = int(torch.randint(0, max(1, limit - tokens + 1), (1,), generator=generator))
    return torch.arange(start, start + tokens, device=model.device).unsqueeze(0)
