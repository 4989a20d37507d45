"""Router fitting on synthetic cases whose best routing is known."""

import pytest
import torch

from leanlm.moe.router_fit import captured_mass, fit_router, mass_shares, top_k_mask

TOKENS, DIM, EXPERTS, TOP_K = 2000, 24, 8, 2


def synthetic_case(seed: int = 0):
    """Return inputs [N, C] with a few large features, and expert mass [N, E] = exp(x W*^T)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(TOKENS, DIM, generator=generator)
    inputs[:, :2] *= 50  # outlier features, as in a Llama's post-norm hidden state
    # logits of standard deviation about 2, so expert shares rarely fall below the fit's floor of 1e-6
    true_weight = 0.4 * torch.randn(EXPERTS, DIM, generator=generator) / inputs.std(dim=0)
    return inputs, (inputs @ true_weight.T).exp()


def split(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return tensor[: TOKENS // 2], tensor[TOKENS // 2 :]


def test_fit_beats_random_router():
    inputs, mass = synthetic_case()
    (fit_inputs, held_inputs), (fit_mass, held_mass) = split(inputs), split(mass)

    weight = fit_router(fit_inputs, fit_mass).weight
    random_weight = torch.randn(EXPERTS, DIM, generator=torch.Generator().manual_seed(9))

    fitted = captured_mass(held_inputs @ weight.T, held_mass, TOP_K)
    oracle = captured_mass(held_mass, held_mass, TOP_K)
    random = captured_mass(held_inputs @ random_weight.T, held_mass, TOP_K)
    assert fitted > 0.99 * oracle
    assert fitted > random + 0.2


def test_fit_recovers_the_ranking():
    inputs, mass = synthetic_case(seed=1)

    weight = fit_router(inputs, mass).weight

    chosen = top_k_mask(inputs @ weight.T, TOP_K)
    assert (chosen == top_k_mask(mass, TOP_K)).all(dim=-1).float().mean() > 0.98


def test_adam_steps_lower_the_loss():
    # zero mass for most experts makes the log-share regression a poor fit, which Adam then improves
    inputs, mass = synthetic_case(seed=2)
    mass = (mass.log() - 1.5).clamp(min=0)

    fit = fit_router(inputs, mass, steps=100, learning_rate=0.05)

    assert fit.loss_end < fit.loss_start - 0.01


def test_mass_shares_rows_sum_to_one():
    mass = torch.tensor([[1.0, 3.0], [0.0, 0.0]])

    shares = mass_shares(mass)

    assert torch.equal(shares, torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


@pytest.mark.parametrize(("top_k", "expected"), [(1, 0.4), (2, 0.7), (3, 1.0)])
def test_captured_mass(top_k, expected):
    mass = torch.tensor([[4.0, 3.0, 3.0]])
    logits = torch.tensor([[3.0, 2.0, 1.0]])

    assert captured_mass(logits, mass, top_k) == pytest.approx(expected)
