"""AdaMoE on a tiny converted model: chosen experts are summed, not renormalised, and the base top-k is checked."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from leanlm.errors import ArtifactError
from leanlm.models.loader import LoadedModel
from leanlm.moe import ConvertConfig, convert_to_moe, save_moe_checkpoint, set_top_k
from leanlm.moe.adamoe import null_expert_routers
from leanlm.moe.adamoe.artifact import load_adamoe, save_adamoe
from leanlm.moe.adamoe.fit import converted_routing
from leanlm.runtime.moe import NULL_EXPERT, Routing, find_moe_layers, moe_runtime

EXPERTS, TOP_K = 4, 2


@pytest.fixture
def converted(loaded, tmp_path) -> LoadedModel:
    moe, report = convert_to_moe(loaded, ConvertConfig(experts=EXPERTS, top_k=TOP_K, window=32, calibration_windows=4))
    save_moe_checkpoint(tmp_path / "moe", moe, loaded, report)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "moe").eval()
    return LoadedModel(model=model, tokenizer=loaded.tokenizer, name="tiny-moe", fingerprint="tiny-moe-0")


def test_converted_routing_scale_and_weight(converted):
    scale, real_weight = converted_routing(converted)

    assert scale == 2.0**-40
    assert real_weight == 1 / TOP_K


def test_chosen_experts_summed_at_base_weight(converted, token_ids):
    # With null slots AdaMoE must equal a policy that runs the same real experts at the base weight 1/k each.
    # That is the checkpoint's own plain sum of experts, not scaled up by k / r.
    routers = null_expert_routers(converted.model, num_null=2, top_k=TOP_K, real_weight=1 / TOP_K)
    with torch.no_grad():
        for router in routers.layers:
            router.real.zero_()
            router.real[1].fill_(1.0)  # expert 1's logit is the sum of the hidden state, the other real ones 0
            router.null.zero_()
            router.null_bias.fill_(1.0)  # null logits 1: a token gets expert 1 and a null slot, or two null slots
    chosen: list[Routing] = []

    def record(logits, layer, hidden):
        routing = routers.policy(logits, layer, hidden)
        chosen.append(routing)
        return routing

    def replay(logits, layer, hidden):
        routing = chosen[layer]
        return Routing(routing.experts, (routing.experts != NULL_EXPERT).to(hidden.dtype) / TOP_K)

    with torch.no_grad(), moe_runtime(converted.model, policy=record):
        adamoe = converted.model(input_ids=token_ids).logits
    with torch.no_grad(), moe_runtime(converted.model, policy=replay):
        summed = converted.model(input_ids=token_ids).logits

    assert any((routing.experts == NULL_EXPERT).any() for routing in chosen)
    torch.testing.assert_close(adamoe, summed, rtol=0, atol=0)


def test_artifact_from_other_top_k_rejected(converted, tmp_path):
    routers = null_expert_routers(converted.model, 2, TOP_K, *converted_routing(converted))
    save_adamoe(tmp_path / "adamoe", routers, converted, {})
    set_top_k(converted.model, EXPERTS)

    with pytest.raises(ArtifactError, match=f"fitted at base top-{TOP_K} but the model runs top-{EXPERTS}"):
        load_adamoe(tmp_path / "adamoe", converted)
    assert len(find_moe_layers(converted.model)) == len(routers.layers)
