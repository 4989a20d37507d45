"""A fitted Attention-Gate: gates plus an eviction ratio, saved as an artifact and used as a KV cache.

At inference each layer keeps round((1 - evict) x n) of a row's n prompt tokens per KV head: the first
`sinks` and the last `window` tokens, then the tokens its gate scores highest. A fixed quota (rather than
the training threshold of 0.5) makes the cache's bytes follow the eviction ratio on any text.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Cache, PreTrainedModel

from leanlm.artifacts import load_artifact, save_artifact
from leanlm.errors import ArtifactError
from leanlm.kv.gate.module import AttentionGates
from leanlm.kv.gate.train import check_evict
from leanlm.models.loader import LoadedModel
from leanlm.runtime.keep_hooks import keep_decisions_enabled
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import HeadProjection, ProjectedCache
from leanlm.runtime.token_eviction import KeepDecision, select_kept

KIND = "attention-gate"


@dataclass
class AttentionGateKV:
    gates: AttentionGates
    evict: float
    sinks: int = 4
    window: int = 64

    def __post_init__(self) -> None:
        check_evict(self.evict)

    def decide(self, layer: int, hidden: torch.Tensor, real: torch.Tensor | None) -> KeepDecision:
        """Return the keep decision of one layer's prefill (a `KeepPolicy`)."""
        with torch.no_grad():
            scores = self.gates(layer, hidden, real)  # [B, Hkv, T]
        return select_kept(scores, real, 1 - self.evict, sinks=self.sinks, window=self.window)

    def cache(self, model: PreTrainedModel) -> Cache:
        """Return an empty cache that stores the kept tokens at full width (a `CacheFactory`)."""
        self.gates.to(model.device)
        layers, _, kv_heads, _ = self.gates.shape
        head_dim = _head_dim(model)
        identity = HeadProjection.identity(kv_heads, head_dim, model.dtype, model.device)
        return ProjectedCache([identity] * layers)

    @contextmanager
    def enabled(self, model: PreTrainedModel) -> Iterator[None]:
        """Let `model` evict prompt tokens by this gate inside the block."""
        self.gates.to(model.device)
        with kv_attention_enabled(model), keep_decisions_enabled(model, self.decide):
            yield


def save_gate(path: Path, method: AttentionGateKV, loaded: LoadedModel, report: dict) -> Path:
    layers, hidden_size, kv_heads, gate_dim = method.gates.shape
    config = {
        "layers": layers, "hidden_size": hidden_size, "kv_heads": kv_heads, "gate_dim": gate_dim,
        "evict": method.evict, "sinks": method.sinks, "window": method.window,
    }
    tensors = {"gates": {name: p.detach() for name, p in method.gates.state_dict().items()}}
    return save_artifact(
        path, kind=KIND, base_model=loaded.name, base_fingerprint=loaded.fingerprint, config=config,
        tensors=tensors, report=report,
    )


def load_gate(path: Path, loaded: LoadedModel) -> AttentionGateKV:
    artifact = load_artifact(path, kinds=(KIND,), base_fingerprint=loaded.fingerprint)
    config = artifact.config
    model_config = loaded.model.config
    try:
        expected = (model_config.num_hidden_layers, model_config.hidden_size, model_config.num_key_value_heads)
        found = (config["layers"], config["hidden_size"], config["kv_heads"])
        if found != expected:
            raise ArtifactError(
                f"{path} is for {found[0]} layers, hidden size {found[1]}, {found[2]} KV heads, but the model has "
                f"{expected[0]}, {expected[1]}, {expected[2]}; fit the gate again for this model"
            )
        gates = AttentionGates(config["layers"], config["hidden_size"], config["kv_heads"], config["gate_dim"])
        gates.load_state_dict(artifact.tensors["gates"])
        return AttentionGateKV(gates=gates, evict=config["evict"], sinks=config["sinks"], window=config["window"])
    except KeyError as err:
        raise ArtifactError(f"{path} is missing {err}; fit the artifact again") from err
    except RuntimeError as err:  # load_state_dict on wrong shapes
        raise ArtifactError(f"{path} has gate weights that do not fit its config ({err}); fit the artifact again") from err


def _head_dim(model: PreTrainedModel) -> int:
    config = model.config
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
