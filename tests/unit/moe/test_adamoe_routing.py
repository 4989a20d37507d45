"""AdaMoE routing and balance loss on hand-made logits: null slots, renormalisation, and the loss's axis."""

import pytest
import torch

from leanlm.errors import InvalidArgumentError
from leanlm.moe.adamoe import adamoe_routing, balance_loss, real_experts_per_token
from leanlm.runtime.moe import NULL_EXPERT, top_k_softmax

E, M = 4, 2


def test_no_null_experts_equals_stock_top_k():
    logits = torch.randn(16, E, generator=torch.Generator().manual_seed(0))

    routing, _, _ = adamoe_routing(logits, num_real=E, top_k=2)
    stock = top_k_softmax(logits, 2, weight_dtype=torch.float32)

    assert torch.equal(routing.experts, stock.experts)
    torch.testing.assert_close(routing.weights, stock.weights, rtol=1e-6, atol=1e-7)


def test_null_slots_are_marked_and_real_weights_sum_to_one():
    # token 0 picks real 0 and null 4; token 1 picks reals 1 and 2; token 2 picks nulls 4 and 5
    logits = torch.tensor([
        [5.0, 0.0, 0.0, 0.0, 4.0, -9.0],
        [0.0, 3.0, 2.0, 0.0, -9.0, -9.0],
        [0.0, 0.0, 0.0, 0.0, 6.0, 5.0],
    ])

    routing, _, _ = adamoe_routing(logits, num_real=E, top_k=2)

    assert routing.experts.tolist() == [[0, NULL_EXPERT], [1, 2], [NULL_EXPERT, NULL_EXPERT]]
    assert routing.weights[0].tolist() == [1.0, 0.0]
    assert routing.weights[1].sum().item() == pytest.approx(1.0)
    assert routing.weights[1, 0] > routing.weights[1, 1]
    assert routing.weights[2].tolist() == [0.0, 0.0]  # divided by 1, not by 0
    assert real_experts_per_token(routing).tolist() == [1.0, 2.0, 0.0]


def test_tiny_logits_keep_their_order_and_weigh_equally():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.5, 2.5, -1.0]]) * 2.0**-40

    routing, _, _ = adamoe_routing(logits, num_real=E, top_k=3)

    assert routing.experts.tolist() == [[0, NULL_EXPERT, 2]]
    assert routing.weights.tolist() == [[0.5, 0.0, 0.5]]


def uniform_probabilities(n: int) -> torch.Tensor:
    return torch.full((n, E + M), 1.0 / (E + M))


def test_balance_loss_ignores_the_split_among_null_experts():
    probabilities = torch.softmax(torch.randn(4, E + M, generator=torch.Generator().manual_seed(1)), dim=-1)
    all_on_first_null = torch.tensor([[0, 4], [1, 4], [2, 4], [3, 4]])
    spread_over_nulls = torch.tensor([[0, 4], [1, 5], [2, 4], [3, 5]])

    same_total = balance_loss(probabilities, all_on_first_null, E), balance_loss(probabilities, spread_over_nulls, E)
    # the plain Switch loss (averaging over the token axis leaves f unchanged) distinguishes the two
    switch = [balance_loss(probabilities, chosen, num_real=E + M) for chosen in (all_on_first_null, spread_over_nulls)]

    assert same_total[0].item() == pytest.approx(same_total[1].item())
    assert switch[0].item() != pytest.approx(switch[1].item())


def test_balance_loss_responds_to_total_null_usage():
    # null experts get a higher mean probability than real ones, so more null slots raise the loss
    probabilities = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.3, 0.3]]).expand(4, -1)
    few_nulls = torch.tensor([[0, 1], [2, 3], [0, 4], [1, 2]])
    many_nulls = torch.tensor([[0, 4], [2, 5], [4, 5], [1, 4]])

    assert balance_loss(probabilities, many_nulls, E) > balance_loss(probabilities, few_nulls, E)


def test_balance_loss_is_one_when_uniform():
    chosen = torch.tensor([[0, 1], [2, 3], [4, 5]])

    assert balance_loss(uniform_probabilities(3), chosen, E).item() == pytest.approx(1.0)


@pytest.mark.parametrize("shape, num_real, top_k", [((3,), 2, 1), ((2, 6), 0, 1), ((2, 6), 4, 7), ((2, 6), 7, 1)])
def test_bad_sizes_raise(shape, num_real, top_k):
    with pytest.raises(InvalidArgumentError):
        adamoe_routing(torch.zeros(shape), num_real, top_k)


def test_fixed_weight_keeps_renormalised_gradient():
    logits = torch.tensor([[5.0, 0.0, 1.0, 0.0, 4.0, -9.0], [0.5, 3.0, 2.0, 0.0, -9.0, -9.0]], requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])  # [N, K]

    fixed, _, _ = adamoe_routing(logits, num_real=E, top_k=3, real_weight=0.25)
    (fixed.weights * upstream).sum().backward()
    fixed_grad, logits.grad = logits.grad.clone(), None
    renormalised, _, _ = adamoe_routing(logits, num_real=E, top_k=3)
    (renormalised.weights * upstream).sum().backward()

    assert fixed.experts.tolist() == [[0, NULL_EXPERT, 2], [1, 2, 0]]
    assert fixed.weights.tolist() == [[0.25, 0.0, 0.25], [0.25, 0.25, 0.25]]
    assert torch.equal(fixed_grad, logits.grad)
