"""Null-expert routers on tiny stock MoE models: zero null experts equal the base, all-null tokens get zero."""

import pytest
import torch

from leanlm.moe.adamoe import null_expert_routers
from leanlm.runtime.moe import find_moe_layers, moe_block_forward, moe_runtime
from tests.unit.runtime.moe.conftest import TOP_K, build_moe_model

TOKENS = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(TOKENS).logits


@pytest.mark.parametrize("kind", ["mixtral", "granitemoe"])
def test_zero_null_experts_equal_the_base(kind):
    model = build_moe_model(kind)
    expected = logits(model)
    routers = null_expert_routers(model, num_null=0, top_k=TOP_K)

    with moe_runtime(model, policy=routers.policy):
        actual = logits(model)

    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)
    assert routers.avg_real_experts() == TOP_K


def test_scaled_router_logits_bit_exact():
    model = build_moe_model("granitemoe")
    layer = find_moe_layers(model)[0]
    scale = 2.0**-40
    with torch.no_grad():
        layer.block.router.weight.mul_(scale)
    hidden = torch.randn(5, model.config.hidden_size)

    routers = null_expert_routers(model, num_null=0, top_k=TOP_K, logit_scale=scale)

    assert torch.equal(routers.layers[0].logits(hidden), layer.adapter.router_logits(layer.block, hidden))


def test_all_null_token_zero_output():
    model = build_moe_model("mixtral")
    layer = find_moe_layers(model)[0]
    routers = null_expert_routers(model, num_null=2, top_k=2)
    with torch.no_grad():
        routers.layers[0].null_bias.fill_(1e4)  # every null logit beats every real one
    hidden = torch.randn(1, 3, model.config.hidden_size)

    with torch.no_grad():
        output = moe_block_forward(hidden, adapter=layer.adapter, block=layer.block, layer=layer.spec, policy=routers.policy)

    assert torch.equal(output, torch.zeros_like(output))
    assert routers.avg_real_experts() == 0.0


def test_null_rows_start_as_copies_of_real_rows():
    model = build_moe_model("mixtral")
    routers = null_expert_routers(model, num_null=6, top_k=3)

    router = routers.layers[0]
    num_real = router.num_real
    for j in range(6):
        assert torch.equal(router.null[j], router.real[j % num_real])


def test_tiny_scale_router_gradient_size():
    model = build_moe_model("granitemoe")
    layer = find_moe_layers(model)[0]
    with torch.no_grad():
        layer.block.router.weight.mul_(2.0**-40)
    routers = null_expert_routers(model, num_null=2, top_k=3, logit_scale=2.0**-40)

    with moe_runtime(model, policy=routers.policy):
        model(TOKENS).logits.square().mean().backward()

    gradient = routers.layers[0].real.grad
    assert gradient is not None
    assert 1e-8 < gradient.abs().max().item() < 1e3


def test_training_steers_real_experts_toward_the_target(tmp_path):
    from leanlm.moe.adamoe.train import AdaMoETrainConfig, train_routers

    model = build_moe_model("mixtral")
    routers = null_expert_routers(model, num_null=4, top_k=2)
    windows = torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(0))
    config = AdaMoETrainConfig(target_real=0.5, steps=60, batch=2, bias_rate=0.2, checkpoint_every=30)

    stats = train_routers(model, routers, windows, config, checkpoint_dir=tmp_path)

    assert stats[0].avg_real_experts == pytest.approx(1.0)  # each null copies a real row, and the real one wins the tie
    assert abs(stats[-1].avg_real_experts - 0.5) < 0.2
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again after training


def test_training_resumes_from_its_checkpoint(tmp_path):
    from leanlm.moe.adamoe.train import AdaMoETrainConfig, train_routers

    model = build_moe_model("mixtral")
    windows = torch.randint(3, 100, (4, 12), generator=torch.Generator().manual_seed(0))

    def run(steps, directory):
        routers = null_expert_routers(model, num_null=2, top_k=3)
        config = AdaMoETrainConfig(target_real=2.0, steps=steps, batch=2, checkpoint_every=2)
        return routers, train_routers(model, routers, windows, config, checkpoint_dir=directory)

    straight, straight_stats = run(6, tmp_path / "straight")
    run(4, tmp_path / "split")
    resumed, resumed_stats = run(6, tmp_path / "split")

    assert [s.loss for s in resumed_stats] == pytest.approx([s.loss for s in straight_stats], rel=1e-5)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
