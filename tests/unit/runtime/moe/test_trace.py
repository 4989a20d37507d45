"""Routing traces: recorded ids equal the stock top-k, and the safetensors file round-trips."""

import pytest
import torch
from safetensors.torch import save_file

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe import NULL_EXPERT, Routing, RoutingRecorder, find_moe_layers, load_routing_trace, moe_runtime
from tests.unit.runtime.moe.conftest import NUM_EXPERTS, TOP_K, build_moe_model


def stock_top_k(model, batch) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Run the stock forward and return each MoE layer's router output (top-k indices, top-k weights)."""
    captured = {}
    handles = []
    for layer in find_moe_layers(model):

        def keep(module, args, output, index=layer.spec.index):
            captured[index] = (output[2], output[1])

        handles.append(layer.adapter.router(layer.block).register_forward_hook(keep))
    try:
        with torch.no_grad():
            model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return captured


def test_trace_equals_stock_top_k(moe_model, padded_batch, tmp_path):
    expected = stock_top_k(moe_model, padded_batch)
    recorder = RoutingRecorder("tiny-moe")
    with torch.no_grad(), moe_runtime(moe_model, recorder=recorder):
        moe_model(**padded_batch)
        moe_model(**padded_batch)
    trace = load_routing_trace(recorder.save(tmp_path / "trace.safetensors"))

    assert trace.model_name == "tiny-moe"
    assert trace.num_experts == NUM_EXPERTS
    assert trace.top_k == TOP_K
    assert sorted(trace.experts) == sorted(expected)
    for index, (stock_experts, stock_weights) in expected.items():
        assert trace.experts[index].dtype == torch.int16
        assert torch.equal(trace.experts[index].long(), torch.cat([stock_experts, stock_experts]))
        torch.testing.assert_close(trace.weights[index], torch.cat([stock_weights, stock_weights]).float())
        assert trace.forward_tokens[index].tolist() == [14, 14]


def test_trace_names_moe_modules():
    model = build_moe_model("qwen2_moe")
    recorder = RoutingRecorder("tiny-qwen2-moe")
    with torch.no_grad(), moe_runtime(model, recorder=recorder):
        model(input_ids=torch.tensor([[5, 6, 7]]))

    assert recorder.trace().layer_names == {0: "model.layers.0.mlp", 1: "model.layers.2.mlp"}


def test_trace_pads_narrower_forwards(moe_model, tmp_path):
    """Forwards routed with K = 1 and K = 3 are stored as K = 3, the narrow rows padded with null slots."""

    def variable_k(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor) -> Routing:
        k = next(slots)  # one K per MoE layer call: 1 in the first forward, 3 in the second
        weights, experts = torch.topk(router_logits.softmax(dim=-1), k)
        return Routing(experts=experts, weights=weights)

    layers = find_moe_layers(moe_model)
    slots = iter([1] * len(layers) + [3] * len(layers))
    recorder = RoutingRecorder("tiny-moe")
    with torch.no_grad(), moe_runtime(moe_model, policy=variable_k, recorder=recorder):
        moe_model(input_ids=torch.tensor([[5, 6]]))
        moe_model(input_ids=torch.tensor([[7, 8, 9]]))
    trace = load_routing_trace(recorder.save(tmp_path / "trace.safetensors"))

    experts = trace.experts[0]
    assert experts.shape == (5, 3)
    assert (experts[:2, 1:] == NULL_EXPERT).all()
    assert (trace.weights[0][:2, 1:] == 0).all()
    assert (experts[2:] >= 0).all()
    assert trace.forward_tokens[0].tolist() == [2, 3]


def test_empty_recorder_raises(tmp_path):
    with pytest.raises(InvalidArgumentError, match="routing recorder is empty"):
        RoutingRecorder("tiny-moe").save(tmp_path / "trace.safetensors")


def test_load_rejects_other_files(tmp_path):
    other = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(InvalidArgumentError, match="not a leanlm routing trace"):
        load_routing_trace(other)
    with pytest.raises(InvalidArgumentError, match="cannot read the routing trace"):
        load_routing_trace(tmp_path / "missing.safetensors")
