"""Bad conversion settings, unsupported models and occupied output paths raise leanlm errors."""

import json

import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from leanlm.errors import ArtifactError, InvalidArgumentError
from leanlm.models.loader import LoadedModel
from leanlm.moe import ConvertConfig, check_convertible, check_moe_output, convert_to_moe, set_top_k

from .conftest import build_llama


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"experts": 8, "top_k": 9}, "top_k must be an integer from 1 to the number of experts"),
        ({"experts": 8, "top_k": 0}, "top_k must be an integer from 1"),
        ({"experts": 0}, "experts must be a positive integer"),
        ({"calibration_windows": 1}, "calibration_windows must be an integer of at least 2"),
        ({"window": 1}, "window must be an integer of at least 2"),
        ({"kmeans_iterations": 0}, "kmeans_iterations must be"),
        ({"router_steps": -1}, "router_steps must be"),
        ({"router_learning_rate": 0.0}, "router_learning_rate must be positive"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_bad_settings(settings, message):
    with pytest.raises(InvalidArgumentError, match=message):
        ConvertConfig(**settings)


def test_experts_not_dividing_intermediate(loaded):
    with pytest.raises(InvalidArgumentError, match="experts=6 does not divide the MLP's intermediate size 128"):
        convert_to_moe(loaded, ConvertConfig(experts=6, top_k=2))


def test_non_llama_model(tokenizer):
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=320))
    loaded = LoadedModel(model=gpt2, tokenizer=tokenizer, name="tiny-gpt2", fingerprint="x")

    with pytest.raises(InvalidArgumentError, match="supports Llama-architecture models .* got GPT2LMHeadModel"):
        check_convertible(loaded, ConvertConfig(experts=4, top_k=2))


def test_llama_with_mlp_bias(tokenizer):
    model = build_llama()
    model.config.mlp_bias = True
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name="tiny-llama", fingerprint="x")

    with pytest.raises(InvalidArgumentError, match="mlp_bias=True"):
        check_convertible(loaded, ConvertConfig(experts=4, top_k=2))


def test_set_top_k_on_dense_model():
    with pytest.raises(InvalidArgumentError, match="needs a converted GraniteMoeForCausalLM, got LlamaForCausalLM"):
        set_top_k(build_llama(), 2)


def test_set_top_k_out_of_range(loaded):
    moe, _ = convert_to_moe(loaded, ConvertConfig(experts=4, top_k=2, window=32, calibration_windows=2))

    with pytest.raises(InvalidArgumentError, match=r"from 1 to the number of experts \(4\), got 5"):
        set_top_k(moe, 5)


def test_output_path_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(ArtifactError, match="is not a leanlm artifact"):
        check_moe_output(tmp_path)


def test_output_path_with_other_artifact(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"kind": "matryoshka-kv"}))

    with pytest.raises(ArtifactError, match="of kind 'matryoshka-kv', not 'moe-converted-model'"):
        check_moe_output(tmp_path)


def test_output_path_free(tmp_path):
    check_moe_output(tmp_path / "new")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"target_real": float("inf")}, "target_real must be a finite number"),
        ({"balance_weight": float("nan")}, "balance_weight must be a finite number"),
        ({"top_k": 6, "num_null": 2, "target_real": 3.0}, "out of reach: with top-k 6 and 2 null experts a token gets from 4 to 6"),
        ({"top_k": 6, "target_real": 7.0}, "out of reach"),
        ({"batch": 8, "calibration_windows": 4}, "more than the 3 training windows"),
    ],
)
def test_bad_adamoe_settings(settings, message):
    from leanlm.moe.adamoe.fit import AdaMoEFitConfig

    with pytest.raises(InvalidArgumentError, match=message):
        AdaMoEFitConfig(**settings)


def test_bench_target_checked_before_run():
    from leanlm.bench.moe import MoeBenchConfig

    with pytest.raises(InvalidArgumentError, match="out of reach"):
        MoeBenchConfig(targets=(20.0,))
