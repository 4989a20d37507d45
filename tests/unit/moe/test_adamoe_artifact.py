"""AdaMoE artifacts: round trip, the wrong model, and a damaged directory."""

import json

import pytest
import torch

from leanlm.errors import ArtifactError
from leanlm.models.loader import LoadedModel
from leanlm.moe.adamoe import null_expert_routers
from leanlm.moe.adamoe.artifact import adamoe_enabled, load_adamoe, save_adamoe
from tests.unit.runtime.moe.conftest import build_moe_model

TOKENS = torch.tensor([[5, 6, 7, 8, 9, 10]])


def loaded(kind="mixtral", fingerprint="tiny-0") -> LoadedModel:
    return LoadedModel(model=build_moe_model(kind), tokenizer=None, name=f"tiny-{kind}", fingerprint=fingerprint)


def fitted(model_loaded: LoadedModel):
    routers = null_expert_routers(model_loaded.model, num_null=3, top_k=3)
    with torch.no_grad():
        for router in routers.layers:
            router.null.normal_()
            router.null_bias.fill_(0.5)
    return routers


def test_round_trip_routes_the_same(tmp_path):
    base = loaded()
    routers = fitted(base)
    save_adamoe(tmp_path / "adamoe", routers, base, {"note": "test"})

    with torch.no_grad(), adamoe_enabled(base, tmp_path / "adamoe") as reloaded:
        from_artifact = base.model(TOKENS).logits
    from leanlm.runtime.moe import moe_runtime

    with torch.no_grad(), moe_runtime(base.model, policy=routers.policy):
        in_memory = base.model(TOKENS).logits

    assert torch.equal(from_artifact, in_memory)
    assert reloaded.avg_real_experts() == routers.avg_real_experts()


def test_other_model_is_rejected(tmp_path):
    base = loaded()
    save_adamoe(tmp_path / "adamoe", fitted(base), base, {})

    with pytest.raises(ArtifactError):
        load_adamoe(tmp_path / "adamoe", loaded(fingerprint="another-model"))


def test_wrong_shapes_are_rejected(tmp_path):
    base = loaded()
    save_adamoe(tmp_path / "adamoe", fitted(base), base, {})
    config_path = tmp_path / "adamoe" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_null"] = 5
    config_path.write_text(json.dumps(config))

    with pytest.raises(ArtifactError, match="do not fit"):
        load_adamoe(tmp_path / "adamoe", base)


def test_no_path_changes_nothing():
    base = loaded()
    with torch.no_grad():
        expected = base.model(TOKENS).logits
        with adamoe_enabled(base, None) as routers:
            actual = base.model(TOKENS).logits

    assert routers is None
    assert torch.equal(actual, expected)
