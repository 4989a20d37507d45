"""MatryoshkaKV artifacts: save and load round trip, base-model and shape checks, corrupt files."""

import json

import pytest
import torch

from leanlm.errors import ArtifactError
from leanlm.kv.matryoshka.method import MatryoshkaKV, load_matryoshka, save_matryoshka
from leanlm.kv.matryoshka.projections import MatryoshkaProjections
from leanlm.kv.matryoshka.ranks import RankPlan
from leanlm.models.loader import LoadedModel

from .helpers import build_llama, orthogonality_error, train_randomly

REPORT = {"perplexity": 12.5}


@pytest.fixture(scope="module")
def method(pca) -> MatryoshkaKV:
    """A method with trained (non-PCA) bases and ranks that differ per layer, head, keys and values."""
    projections = MatryoshkaProjections(pca)
    train_randomly(projections)
    plan = RankPlan(key_ranks=torch.tensor([[4, 8], [12, 16]]), value_ranks=torch.tensor([[16, 12], [8, 4]]), head_dim=16)
    return MatryoshkaKV(projections=projections, plan=plan)


@pytest.fixture
def saved(tmp_path, method, loaded):
    return save_matryoshka(tmp_path / "matryoshka", method, loaded, REPORT)


def logits_through(method: MatryoshkaKV, model, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), method.enabled(model):
        return model(input_ids=input_ids, cache=method.cache(model), use_cache=True).logits


def test_round_trip_bases(saved, method, loaded):
    restored = load_matryoshka(saved, loaded)
    with torch.no_grad():
        key_expected, value_expected = method.projections.bases()
    key_basis, value_basis = restored.projections.bases()

    assert orthogonality_error(key_basis) < 1e-5
    assert orthogonality_error(value_basis) < 1e-5
    assert torch.allclose(key_basis, key_expected, atol=1e-6)
    assert torch.allclose(value_basis, value_expected, atol=1e-6)
    assert torch.equal(restored.projections.key_mean, method.projections.key_mean)
    assert torch.equal(restored.projections.value_mean, method.projections.value_mean)


def test_round_trip_plan(saved, method, loaded):
    restored = load_matryoshka(saved, loaded)

    assert torch.equal(restored.plan.key_ranks, method.plan.key_ranks)
    assert torch.equal(restored.plan.value_ranks, method.plan.value_ranks)
    assert restored.plan.head_dim == 16
    assert restored.plan.budget == pytest.approx(method.plan.budget)


def test_saved_config_and_report(saved, method):
    config = json.loads((saved / "config.json").read_text())

    assert config["kind"] == "matryoshka-kv"
    assert config["base_model"] == "tiny-llama"
    assert config["budget"] == pytest.approx(method.plan.budget)
    assert json.loads((saved / "report.json").read_text()) == REPORT


def test_round_trip_logits(saved, method, loaded, model):
    restored = load_matryoshka(saved, loaded)
    input_ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(11))

    expected = logits_through(method, model, input_ids)
    observed = logits_through(restored, model, input_ids)

    assert torch.allclose(observed, expected, atol=1e-5)


def test_other_fingerprint_rejected(saved, model):
    other = LoadedModel(model=model, tokenizer=None, name="tiny-llama", fingerprint="another-model")

    with pytest.raises(ArtifactError, match="fit it again for this model"):
        load_matryoshka(saved, other)


def test_other_shape_rejected(saved, loaded):
    deeper = LoadedModel(model=build_llama(layers=3), tokenizer=None, name="tiny-llama", fingerprint=loaded.fingerprint)

    with pytest.raises(ArtifactError) as raised:
        load_matryoshka(saved, deeper)

    assert "2 layers x 2 KV heads x head dim 16" in str(raised.value)
    assert "3 x 2 x 16" in str(raised.value)


def test_truncated_tensors_rejected(saved, loaded):
    tensor_file = saved / "projections.safetensors"
    tensor_file.write_bytes(tensor_file.read_bytes()[: tensor_file.stat().st_size // 2])

    with pytest.raises(ArtifactError, match="corrupt"):
        load_matryoshka(saved, loaded)


def test_missing_tensor_file_rejected(saved, loaded):
    (saved / "projections.safetensors").unlink()

    with pytest.raises(ArtifactError, match="missing 'projections'"):
        load_matryoshka(saved, loaded)


def test_config_without_layers_rejected(saved, loaded):
    config_path = saved / "config.json"
    config = json.loads(config_path.read_text())
    del config["layers"]
    config_path.write_text(json.dumps(config))

    with pytest.raises(ArtifactError, match="layers"):
        load_matryoshka(saved, loaded)
