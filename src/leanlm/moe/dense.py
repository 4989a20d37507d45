"""The dense side of the conversion: check a Llama model, capture its MLP inputs, split its MLP outputs by expert.

A Llama MLP computes down(act(gate x) * up x). Its intermediate activations a = act(gate x) * up x are the
per-neuron values that the clustering groups and the router's target measures.

Shapes: N calibration tokens, C model dim, I intermediate size, E experts, G = I / E neurons per expert.
"""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from transformers import LlamaForCausalLM, PreTrainedModel

from leanlm.errors import InvalidArgumentError

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]  # called with the number of windows just finished


def check_llama(model: PreTrainedModel) -> None:
    """Raise InvalidArgumentError unless `model` is a Llama whose MLP the GraniteMoe layout can express."""
    if not isinstance(model, LlamaForCausalLM):
        raise InvalidArgumentError(
            f"MoE conversion supports Llama-architecture models (LlamaForCausalLM), got {type(model).__name__}; "
            "pass a Llama model such as the default smollm2-135m-instruct"
        )
    if getattr(model.config, "mlp_bias", False):
        raise InvalidArgumentError("MoE conversion needs an MLP without biases, but this Llama has mlp_bias=True")


def mlp_layers(model: PreTrainedModel) -> list[nn.Module]:
    """Return the MLP module of each decoder layer, in layer order."""
    return [layer.mlp for layer in model.model.layers]


@contextmanager
def captured_mlp_inputs(model: PreTrainedModel) -> Iterator[list[list[torch.Tensor]]]:
    """Record the input of every MLP (the post-attention-norm hidden state) during forward passes in the block.

    Yields one list per layer, to which each forward pass appends a [B * T, C] tensor on the CPU.
    """
    inputs: list[list[torch.Tensor]] = [[] for _ in mlp_layers(model)]
    handles = []
    try:
        for index, mlp in enumerate(mlp_layers(model)):
            handles.append(mlp.register_forward_pre_hook(_recorder(inputs[index])))
        yield inputs
    finally:
        for handle in handles:
            handle.remove()


def _recorder(store: list[torch.Tensor]):
    def hook(module: nn.Module, args: tuple) -> None:
        hidden = args[0]  # [B, T, C]
        store.append(hidden.detach().flatten(0, 1).float().cpu())

    return hook


def collect_mlp_inputs(
    model: PreTrainedModel, windows: torch.Tensor, *, batch_size: int = 4, progress: Progress | None = None
) -> list[torch.Tensor]:
    """Run the model over token windows [N_windows, T] and return each layer's MLP inputs as [N, C] in fp32."""
    with torch.no_grad(), captured_mlp_inputs(model) as inputs:
        for batch in windows.split(batch_size):  # [B, T]
            # the base model stops before the language-model head, whose logits nothing here needs
            model.model(input_ids=batch.to(model.device), use_cache=False)
            if progress:
                progress(batch.shape[0])
    return [torch.cat(chunks) for chunks in inputs]


def intermediate_activations(mlp: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Return a = act(gate x) * up x, [N, I] in fp32, for MLP inputs [N, C]."""
    with torch.no_grad():
        weight_dtype = mlp.gate_proj.weight.dtype
        x = inputs.to(mlp.gate_proj.weight.device, weight_dtype)
        return (mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)).float()


def expert_output_norms(mlp: nn.Module, activations: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Return the L2 norm of each expert's share of the MLP output, [N, E].

    Expert e's share is down[:, S_e] a[:, S_e], where S_e = `groups[e]`, so the E shares sum to the dense output.
    """
    return torch.stack([share.norm(dim=-1) for share in _expert_shares(mlp, activations, groups)], dim=-1)


def kept_output_error(mlp: nn.Module, activations: torch.Tensor, groups: torch.Tensor, kept: torch.Tensor) -> float:
    """Return ||y - y_kept|| / ||y|| over all tokens, where y_kept sums only the experts marked in `kept` [N, E]."""
    dense = torch.zeros(activations.shape[0], mlp.down_proj.weight.shape[0], device=activations.device)  # [N, C]
    dropped = torch.zeros_like(dense)
    for expert, share in enumerate(_expert_shares(mlp, activations, groups)):  # [N, C]
        dense += share
        dropped += share * (~kept[:, expert, None])
    dropped_sq, total_sq = dropped.square().sum().item(), dense.square().sum().item()
    return (dropped_sq / total_sq) ** 0.5 if total_sq > 0 else 0.0


def _expert_shares(mlp: nn.Module, activations: torch.Tensor, groups: torch.Tensor) -> Iterator[torch.Tensor]:
    down = mlp.down_proj.weight.detach().float().to(activations.device)  # [C, I]
    for neurons in groups.to(activations.device):  # [G]
        yield activations[:, neurons] @ down[:, neurons].T  # [N, C]
