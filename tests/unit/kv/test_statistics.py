"""`StatisticsCache`: per-head moments of post-RoPE keys and values, checked against a `DynamicCache`.

Shapes: B batch, T tokens, L layers, Hkv KV heads, D head dim.
"""

import torch
from transformers import DynamicCache

from leanlm.kv.matryoshka.pca import collect_statistics
from leanlm.runtime.kv_statistics import StatisticsCache


def cached_states(model, batches: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Prefill each batch into its own `DynamicCache`, then return per-layer keys and values [Hkv, N, D] in float64.

    N counts every token of every batch, because the statistics treat each token as one sample.
    """
    keys: list[list[torch.Tensor]] = [[] for _ in range(model.config.num_hidden_layers)]
    values: list[list[torch.Tensor]] = [[] for _ in range(model.config.num_hidden_layers)]
    with torch.no_grad():
        for batch in batches:
            cache = DynamicCache(config=model.config)
            model(input_ids=batch, cache=cache, use_cache=True)
            for index, layer in enumerate(cache.layers):
                keys[index].append(layer.keys.double().transpose(0, 1).flatten(1, 2))  # [Hkv, B*T, D]
                values[index].append(layer.values.double().transpose(0, 1).flatten(1, 2))
    return [torch.cat(parts, dim=1) for parts in keys], [torch.cat(parts, dim=1) for parts in values]


def mean_and_covariance(samples: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [Hkv, D] and population covariance [Hkv, D, D] (divided by N) of samples [Hkv, N, D]."""
    mean = samples.mean(dim=1)
    centred = samples - mean[:, None, :]
    covariance = centred.transpose(1, 2) @ centred / samples.shape[1]
    return mean, covariance


def test_moments_match_dynamic_cache(model, windows):
    batches = [windows[:2], windows[2:]]  # a batch of two windows, then one more window
    cache = StatisticsCache(model.config.num_hidden_layers)
    with torch.no_grad():
        for batch in batches:
            model(input_ids=batch, cache=cache, use_cache=True)
    statistics = cache.statistics()
    keys, values = cached_states(model, batches)

    assert statistics.tokens == windows.numel()
    for layer in range(model.config.num_hidden_layers):
        key_mean, key_covariance = mean_and_covariance(keys[layer])
        value_mean, value_covariance = mean_and_covariance(values[layer])
        assert torch.allclose(statistics.key_mean[layer], key_mean, atol=1e-6), f"key mean, layer {layer}"
        assert torch.allclose(statistics.key_covariance[layer], key_covariance, atol=1e-6), f"key covariance, layer {layer}"
        assert torch.allclose(statistics.value_mean[layer], value_mean, atol=1e-6), f"value mean, layer {layer}"
        assert torch.allclose(statistics.value_covariance[layer], value_covariance, atol=1e-6), (
            f"value covariance, layer {layer}"
        )


def test_moments_are_float64_per_head(model, windows):
    cache = StatisticsCache(model.config.num_hidden_layers)
    with torch.no_grad():
        model(input_ids=windows[:1], cache=cache, use_cache=True)
    statistics = cache.statistics()

    assert statistics.key_mean.shape == (2, 2, 16)
    assert statistics.value_covariance.shape == (2, 2, 16, 16)
    assert statistics.key_covariance.dtype == torch.float64


def test_logits_unchanged(model, windows):
    with torch.no_grad():
        expected = model(input_ids=windows).logits
        observed = model(input_ids=windows, cache=StatisticsCache(model.config.num_hidden_layers), use_cache=True).logits

    assert torch.allclose(observed, expected, atol=1e-5)


def test_collect_statistics_counts_every_token(model, windows):
    # values do not depend on the random position offsets that calibration windows start at; keys do
    statistics = collect_statistics(model, windows)
    _, values = cached_states(model, list(windows.split(1)))
    value_mean, _ = mean_and_covariance(values[1])

    assert statistics.tokens == windows.numel()
    assert torch.allclose(statistics.value_mean[1], value_mean, atol=1e-6)


def test_collect_statistics_offsets_change_keys(model, windows):
    shifted = collect_statistics(model, windows, seed=0)
    other = collect_statistics(model, windows, seed=1)
    assert not torch.allclose(shifted.key_mean, other.key_mean, atol=1e-6)
    assert torch.allclose(shifted.value_mean, other.value_mean, atol=1e-6)
