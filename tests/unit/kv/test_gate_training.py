"""Training of the gates on a tiny Llama: the eviction term, the steps, checkpoints and resume."""

import json

import pytest
import torch

from leanlm.errors import ArtifactError, InvalidArgumentError
from leanlm.kv.gate.module import AttentionGates
from leanlm.kv.gate.train import GateTrainConfig, eviction_loss, gate_loss, train_gates

STEPS = 4


def build_gates(model, seed: int = 0, initial_keep: float = 0.5) -> AttentionGates:
    config = model.config
    torch.manual_seed(seed)
    return AttentionGates(config.num_hidden_layers, config.hidden_size, config.num_key_value_heads, 8, initial_keep)


@pytest.mark.parametrize(("rate", "direction"), [(0.9, 1.0), (0.1, -1.0)], ids=["keeps-too-much", "keeps-too-little"])
def test_eviction_loss_pulls_from_both_sides(rate, direction):
    keep_rates = torch.tensor([rate, rate], requires_grad=True)

    eviction_loss(keep_rates, target_keep=0.5).backward()

    # gradient descent moves each rate toward 0.5: a positive gradient lowers it, a negative one raises it
    assert torch.all(keep_rates.grad * direction > 0)


def test_eviction_loss_zero_at_target():
    assert eviction_loss(torch.tensor([0.5, 0.5]), target_keep=0.5).item() == 0.0


def test_gate_loss_reaches_gate_parameters(model, windows):
    gates = build_gates(model)
    loss, stats = gate_loss(model, gates, windows[:1], GateTrainConfig(evict=0.5, sinks=1, window=2))
    loss.backward()

    assert stats.cross_entropy > 0
    assert 0 <= stats.keep_rate <= 1
    for name, parameter in gates.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_eviction_weight_moves_keep_rate(model, windows):
    """With only the eviction term, training pulls a gate that keeps 90% toward the 25% target."""
    gates = build_gates(model, initial_keep=0.9)
    config = GateTrainConfig(evict=0.75, steps=30, learning_rate=0.05, eviction_weight=100.0, sinks=1, window=2)

    stats = train_gates(model, gates, windows, config)

    assert stats[0].keep_rate > 0.7
    assert stats[-1].keep_rate < stats[0].keep_rate - 0.3


def test_base_model_stays_frozen(model, windows):
    before = [p.detach().clone() for p in model.parameters()]
    train_gates(model, build_gates(model), windows, GateTrainConfig(steps=2, sinks=1, window=2))

    for old, new in zip(before, model.parameters()):
        assert torch.equal(old, new)
        assert new.requires_grad


def test_resume_equals_uninterrupted_run(model, windows, tmp_path):
    config = GateTrainConfig(steps=STEPS, sinks=1, window=2, checkpoint_every=2)
    straight = build_gates(model)
    train_gates(model, straight, windows, config)

    resumed = build_gates(model)
    train_gates(model, resumed, windows, GateTrainConfig(steps=2, sinks=1, window=2, checkpoint_every=2), checkpoint_dir=tmp_path)
    train_gates(model, resumed, windows, config, checkpoint_dir=tmp_path)

    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_resume_rejects_other_checkpoint(model, windows, tmp_path):
    train_gates(model, build_gates(model), windows, GateTrainConfig(steps=2, sinks=1, window=2, checkpoint_every=2), checkpoint_dir=tmp_path)
    config = model.config
    wider = AttentionGates(config.num_hidden_layers, config.hidden_size, config.num_key_value_heads, 4)

    with pytest.raises(ArtifactError, match="does not match"):
        train_gates(model, wider, windows, GateTrainConfig(steps=4, sinks=1, window=2), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("evict", [-0.1, 1.0, 1.5])
def test_config_rejects_bad_eviction_ratio(evict):
    with pytest.raises(InvalidArgumentError, match="eviction ratio"):
        GateTrainConfig(evict=evict)


def test_interrupt_saves_checkpoint_and_resume_keeps_history(model, windows, tmp_path):
    config = GateTrainConfig(steps=STEPS, sinks=1, window=2, checkpoint_every=20)
    done = []

    def interrupt_after_three(n: int) -> None:
        done.append(n)
        if len(done) == 3:
            raise KeyboardInterrupt

    gates = build_gates(model)
    with pytest.raises(KeyboardInterrupt):
        train_gates(model, gates, windows, config, checkpoint_dir=tmp_path, progress=interrupt_after_three)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["step"] == 3
    assert len(state["history"]) == 3

    stats = train_gates(model, gates, windows, config, checkpoint_dir=tmp_path)
    assert len(stats) == STEPS
    assert stats[0].cross_entropy == state["history"][0]["cross_entropy"]
