"""A fitted MatryoshkaKV: projections plus a rank plan, saved as an artifact and used as a KV cache."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Cache, PreTrainedModel

from leanlm.artifacts import load_artifact, save_artifact
from leanlm.errors import ArtifactError
from leanlm.kv.matryoshka.pca import PCABases
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RankPlan
from leanlm.models.loader import LoadedModel
from leanlm.runtime.kv_attention import kv_attention_enabled
from leanlm.runtime.projected_cache import HeadProjection, ProjectedCache

KIND = "matryoshka-kv"


@dataclass
class MatryoshkaKV:
    projections: MatryoshkaProjections
    plan: RankPlan

    def __post_init__(self) -> None:
        self._heads: list[HeadProjection] | None = None

    def cache(self, model: PreTrainedModel) -> Cache:
        """Return an empty projected cache at this plan's ranks (a `CacheFactory`).

        The cut bases are computed on the first call and reused, so change `plan` only by making a new method.
        """
        if self._heads is None:
            self.projections.to(model.device)
            with torch.no_grad():
                self._heads = self.projections.head_projections(self.plan)
        return ProjectedCache(self._heads)

    @contextmanager
    def enabled(self, model: PreTrainedModel) -> Iterator[None]:
        """Let `model` attend over projected caches inside the block."""
        with kv_attention_enabled(model):
            yield


def save_matryoshka(path: Path, method: MatryoshkaKV, loaded: LoadedModel, report: dict) -> Path:
    key_basis, value_basis = method.projections.bases()
    L, H, D = method.projections.shape
    tensors = {
        "projections": {
            "key_basis": key_basis,
            "value_basis": value_basis,
            "key_mean": method.projections.key_mean,
            "value_mean": method.projections.value_mean,
        }
    }
    config = {"layers": L, "kv_heads": H, "head_dim": D, "budget": method.plan.budget} | method.plan.to_lists()
    return save_artifact(
        path, kind=KIND, base_model=loaded.name, base_fingerprint=loaded.fingerprint, config=config,
        tensors=tensors, report=report,
    )


def load_matryoshka(path: Path, loaded: LoadedModel) -> MatryoshkaKV:
    artifact = load_artifact(path, kinds=(KIND,), base_fingerprint=loaded.fingerprint)
    config = artifact.config
    model_shape = _model_shape(loaded.model)
    try:
        if (config["layers"], config["kv_heads"], config["head_dim"]) != model_shape:
            raise ArtifactError(
                f"{path} is for {config['layers']} layers x {config['kv_heads']} KV heads x head dim "
                f"{config['head_dim']}, but the model has {model_shape[0]} x {model_shape[1]} x {model_shape[2]}; "
                "fit it again for this model"
            )
        stored = artifact.tensors["projections"]
        pca = PCABases(
            key_basis=stored["key_basis"], key_mean=stored["key_mean"], key_variance=torch.empty(0),
            value_basis=stored["value_basis"], value_mean=stored["value_mean"], value_variance=torch.empty(0), tokens=0,
        )
        plan = RankPlan(
            key_ranks=torch.tensor(config["key_ranks"]), value_ranks=torch.tensor(config["value_ranks"]),
            head_dim=config["head_dim"],
        )
    except KeyError as err:
        raise ArtifactError(f"{path} is missing {err}; fit the artifact again") from err
    return MatryoshkaKV(projections=MatryoshkaProjections(pca), plan=plan)


def _model_shape(model: PreTrainedModel) -> tuple[int, int, int]:
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.num_key_value_heads, head_dim
