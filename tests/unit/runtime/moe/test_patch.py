"""moe_runtime swaps the blocks' forward only inside the context, and rejects models without supported blocks."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe import MOE_ADAPTERS, AdapterRegistry, find_moe_layers, moe_runtime
from leanlm.runtime.moe.adapters import MixtralAdapter
from tests.unit.runtime.moe.conftest import COMMON

SUPPORTED = [
    "GraniteMoeMoE",
    "MixtralSparseMoeBlock",
    "OlmoeSparseMoeBlock",
    "Qwen2MoeSparseMoeBlock",
    "Qwen3MoeSparseMoeBlock",
]


def uses_stock_forward(block: torch.nn.Module) -> bool:
    return "forward" not in block.__dict__ and block.forward.__func__ is type(block).forward


def test_stock_forward_restored_on_exit(moe_model):
    blocks = [layer.block for layer in find_moe_layers(moe_model)]
    with moe_runtime(moe_model) as layers:
        assert [layer.block for layer in layers] == blocks
        assert not any(uses_stock_forward(block) for block in blocks)

    assert all(uses_stock_forward(block) for block in blocks)


def test_stock_forward_restored_after_error(moe_model, padded_batch):
    def failing_policy(router_logits: torch.Tensor, layer_index: int, hidden: torch.Tensor):
        raise RuntimeError("policy failed")

    with pytest.raises(RuntimeError, match="policy failed"), moe_runtime(moe_model, policy=failing_policy):
        moe_model(**padded_batch)

    assert all(uses_stock_forward(layer.block) for layer in find_moe_layers(moe_model))


def test_nested_contexts_restore_outer(moe_model):
    block = find_moe_layers(moe_model)[0].block
    with moe_runtime(moe_model):
        outer = block.forward
        with moe_runtime(moe_model):
            assert block.forward is not outer
        assert block.forward is outer
    assert uses_stock_forward(block)


def test_unsupported_model_raises():
    config = LlamaConfig(**(COMMON | {"intermediate_size": 48}))
    model = LlamaForCausalLM(config)

    message = "found no supported MoE block in LlamaForCausalLM"
    with pytest.raises(InvalidArgumentError, match=message) as error, moe_runtime(model):
        pass
    assert ", ".join(SUPPORTED) in str(error.value)


def test_registry_lists_supported_classes():
    assert MOE_ADAPTERS.supported() == SUPPORTED


def test_registry_rejects_duplicates():
    registry = AdapterRegistry([MixtralAdapter()])
    with pytest.raises(InvalidArgumentError, match="MixtralSparseMoeBlock is already registered"):
        registry.register(MixtralAdapter())
