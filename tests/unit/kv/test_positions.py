"""Random position offsets for calibration windows."""

import torch

from leanlm.kv.matryoshka.positions import offset_positions


def test_window_stays_inside_context(model):
    generator = torch.Generator().manual_seed(0)
    limit = model.config.max_position_embeddings
    for _ in range(50):
        positions = offset_positions(model, 24, generator)
        assert positions.shape == (1, 24)
        assert int(positions[0, 0]) >= 0
        assert int(positions[0, -1]) < limit
        assert bool((positions.diff() == 1).all())


def test_offsets_vary(model):
    generator = torch.Generator().manual_seed(0)
    starts = {int(offset_positions(model, 24, generator)[0, 0]) for _ in range(20)}
    assert len(starts) > 5


def test_window_as_long_as_context(model):
    limit = model.config.max_position_embeddings
    positions = offset_positions(model, limit, torch.Generator().manual_seed(0))
    assert int(positions[0, 0]) == 0
