"""The converted GraniteMoe model against the dense Llama it came from: equal at K = E, saved, reloaded."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import GraniteMoeForCausalLM

from leanlm.artifacts import REPORT_FILE
from leanlm.moe import KIND, ConvertConfig, convert_to_moe, save_moe_checkpoint, set_top_k
from leanlm.moe.granite import ROUTER_SCALE

from .conftest import FINGERPRINT, build_llama

EXPERTS = 8
SMALL = {"window": 32, "calibration_windows": 4, "kmeans_iterations": 5}


def logits_of(model, token_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=token_ids).logits


@pytest.mark.parametrize("tied", [True, False])
def test_all_experts_equal_dense(loaded, token_ids, tied):
    loaded.model = build_llama(tied=tied)
    moe, _ = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=EXPERTS, **SMALL))

    assert isinstance(moe, GraniteMoeForCausalLM)
    assert moe.config.tie_word_embeddings is tied
    torch.testing.assert_close(logits_of(moe, token_ids), logits_of(loaded.model, token_ids), rtol=0, atol=1e-5)


def test_dense_model_unchanged(loaded, token_ids):
    before = logits_of(loaded.model, token_ids)
    convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=2, **SMALL))

    assert torch.equal(logits_of(loaded.model, token_ids), before)


def test_routing_weights_exact(loaded, token_ids):
    moe, _ = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=4, **SMALL))
    router = moe.model.layers[0].block_sparse_moe.router
    hidden = torch.randn(50, moe.config.hidden_size, generator=torch.Generator().manual_seed(0))

    logits, weights, chosen = router(hidden)
    expected_chosen = (hidden @ (router.weight / ROUTER_SCALE).T).topk(4, dim=-1).indices

    assert torch.equal(weights, torch.full_like(weights, 0.25))
    assert torch.equal(chosen.sort(dim=-1).values, expected_chosen.sort(dim=-1).values)


def test_top_k_change_round_trip(loaded, token_ids):
    moe, _ = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=EXPERTS, **SMALL))
    dense = logits_of(loaded.model, token_ids)

    set_top_k(moe, 2)
    at_two = logits_of(moe, token_ids)
    assert moe.config.num_experts_per_tok == 2
    assert all(layer.block_sparse_moe.router.top_k == 2 for layer in moe.model.layers)
    assert (at_two - dense).abs().max() > 1e-3

    set_top_k(moe, EXPERTS)
    torch.testing.assert_close(logits_of(moe, token_ids), dense, rtol=0, atol=1e-5)


def test_top_k_one_uses_one_expert(loaded, token_ids):
    moe, _ = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=1, **SMALL))
    block = moe.model.layers[0].block_sparse_moe
    hidden = torch.randn(6, moe.config.hidden_size, generator=torch.Generator().manual_seed(1))

    _, weights, chosen = block.router(hidden)
    expert = int(chosen[0, 0])
    gate, up = (hidden[:1] @ block.experts.gate_up_proj[expert].T).chunk(2, dim=-1)
    expected = (torch.nn.functional.silu(gate) * up) @ block.experts.down_proj[expert].T

    assert torch.equal(weights, torch.ones_like(weights))
    torch.testing.assert_close(block(hidden[None, :1]).flatten(), expected.flatten())


def test_report_measures_each_layer(loaded):
    _, report = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=2, **SMALL))

    assert [layer["layer"] for layer in report["layers"]] == [0, 1]
    assert report["held_out_tokens"] == 32
    assert report["calibration_tokens"] == 96
    for layer in report["layers"]:
        assert 0 < layer["capture_router"] <= layer["capture_oracle"] + 1e-6 <= 1 + 1e-6
        assert 0 <= layer["output_error_oracle"] <= 1
    assert report["convert"]["experts"] == EXPERTS


PLAIN_LOAD = """
import sys
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

model = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval()
ids = load_file(sys.argv[2])["ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits
assert not any(name.startswith("leanlm") for name in sys.modules), "leanlm was imported"
save_file({"logits": logits.contiguous(), "top_k": torch.tensor(model.config.num_experts_per_tok)}, sys.argv[3])
print(type(model).__name__)
"""


def test_saved_checkpoint_loads_without_leanlm(loaded, token_ids, tmp_path):
    from safetensors.torch import save_file

    moe, report = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=2, **SMALL))
    out = save_moe_checkpoint(tmp_path / "moe", moe, loaded, report)
    save_file({"ids": token_ids}, str(tmp_path / "ids.safetensors"))

    result = subprocess.run(
        [sys.executable, "-c", PLAIN_LOAD, str(out), str(tmp_path / "ids.safetensors"), str(tmp_path / "out.safetensors")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "GraniteMoeForCausalLM"
    reloaded = load_file(str(tmp_path / "out.safetensors"))
    assert int(reloaded["top_k"]) == 2
    torch.testing.assert_close(reloaded["logits"], logits_of(moe, token_ids), rtol=0, atol=1e-5)


def test_saved_checkpoint_files(loaded, tmp_path):
    moe, report = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=2, **SMALL))
    out = save_moe_checkpoint(tmp_path / "moe", moe, loaded, report)

    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == KIND
    assert config["base_fingerprint"] == FINGERPRINT
    assert config["model_type"] == "granitemoe"
    assert config["num_local_experts"] == EXPERTS
    assert config["intermediate_size"] == 128 // EXPERTS
    assert json.loads((out / REPORT_FILE).read_text())["convert"]["top_k"] == 2
    assert (out / "model.safetensors").is_file()
    assert (out / "tokenizer.json").is_file()
    assert not list(tmp_path.glob(".tmp-*"))


def test_save_replaces_earlier_conversion(loaded, tmp_path):
    moe, report = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=2, **SMALL))
    out = save_moe_checkpoint(tmp_path / "moe", moe, loaded, report)
    report["marker"] = "second"
    save_moe_checkpoint(out, moe, loaded, report)

    assert json.loads((out / REPORT_FILE).read_text())["marker"] == "second"
    assert not list(tmp_path.glob(".old-*"))
