"""An AdaMoE artifact: the fitted null-expert routers of an MoE model, and its routing policy at inference."""

from contextlib import contextmanager
from pathlib import Path

from leanlm.artifacts import load_artifact, save_artifact
from leanlm.errors import ArtifactError
from leanlm.models.loader import LoadedModel
from leanlm.moe.adamoe.fit import converted_routing
from leanlm.moe.adamoe.router import AdaMoERouters, NullExpertRouter
from leanlm.runtime.moe import find_moe_layers, moe_runtime

KIND = "adamoe"


def save_adamoe(path: Path, routers: AdaMoERouters, loaded: LoadedModel, report: dict) -> Path:
    """Write the routers of `loaded` (an MoE model) as an artifact directory."""
    first = routers.layers[0]
    config = {
        "layers": len(routers.layers),
        "num_real": first.num_real,
        "num_null": first.null.shape[0],
        "hidden_size": first.real.shape[1],
        "top_k": routers.top_k,
        "logit_scale": first.logit_scale,
        "real_weight": routers.real_weight,
    }
    tensors = {"routers": {name: p.detach() for name, p in routers.state_dict().items()}}
    return save_artifact(
        path, kind=KIND, base_model=loaded.name, base_fingerprint=loaded.fingerprint, config=config,
        tensors=tensors, report=report,
    )


def load_adamoe(path: Path, loaded: LoadedModel) -> AdaMoERouters:
    """Read AdaMoE routers fitted on `loaded`; raise ArtifactError for another model or a damaged directory."""
    artifact = load_artifact(path, kinds=(KIND,), base_fingerprint=loaded.fingerprint)
    config = artifact.config
    layers = find_moe_layers(loaded.model)
    try:
        expected = (len(layers), layers[0].spec.num_experts, layers[0].spec.hidden_size)
        found = (config["layers"], config["num_real"], config["hidden_size"])
        if found != expected:
            raise ArtifactError(
                f"{path} is for {found[0]} MoE layers of {found[1]} experts and hidden size {found[2]}, but the model "
                f"has {expected[0]}, {expected[1]}, {expected[2]}; fit AdaMoE again for this model"
            )
        _check_real_weight(path, config["real_weight"], loaded)
        routers = AdaMoERouters(
            [
                NullExpertRouter(layer.adapter.router(layer.block).weight, config["num_null"], config["logit_scale"])
                for layer in layers
            ],
            config["top_k"],
            config["real_weight"],
        )
        routers.load_state_dict(artifact.tensors["routers"])
    except KeyError as err:
        raise ArtifactError(f"{path} is missing {err}; fit the artifact again") from err
    except RuntimeError as err:  # load_state_dict on wrong shapes
        raise ArtifactError(f"{path} has router weights that do not fit its config ({err}); fit the artifact again") from err
    return routers.requires_grad_(False).to(loaded.model.device)


def _check_real_weight(path: Path, stored: float | None, loaded: LoadedModel) -> None:
    """Raise ArtifactError when the artifact was fitted at another top-k of a converted model than it runs at."""
    expected = converted_routing(loaded)[1]
    if stored == expected:
        return
    if stored is None or expected is None:
        fitted_on = "an MoE with renormalised weights" if stored is None else "a `leanlm moe convert` model"
        raise ArtifactError(f"{path} was fitted on {fitted_on}, and this model is not one; fit AdaMoE again for this model")
    raise ArtifactError(
        f"{path} was fitted at base top-{round(1 / stored)} but the model runs top-{round(1 / expected)}; "
        f"run the model at top-{round(1 / stored)} or fit AdaMoE again"
    )


@contextmanager
def adamoe_enabled(loaded: LoadedModel, path: Path | None):
    """Route the model's MoE layers with the AdaMoE artifact at `path` inside the block (no change when None).

    Yields the routers, whose statistics describe the last forward pass, or None.
    """
    if path is None:
        yield None
        return
    routers = load_adamoe(path, loaded)
    with moe_runtime(loaded.model, policy=routers.policy):
        yield routers
