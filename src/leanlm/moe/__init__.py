"""Mixture-of-experts methods. `convert_to_moe` turns the dense default model into a real MoE checkpoint.

A converted model is a stock transformers `GraniteMoeForCausalLM`: each Llama MLP is split into equal-sized
experts by neuron co-activation and given a router fitted on calibration text. `set_top_k` changes how many
experts each token uses without converting again.
"""

from leanlm.moe.checkpoint import KIND, check_moe_output, save_moe_checkpoint
from leanlm.moe.convert import ConvertConfig, check_convertible, convert_to_moe
from leanlm.moe.granite import ROUTER_SCALE, set_top_k

__all__ = [
    "KIND",
    "ROUTER_SCALE",
    "ConvertConfig",
    "check_convertible",
    "check_moe_output",
    "convert_to_moe",
    "save_moe_checkpoint",
    "set_top_k",
]
