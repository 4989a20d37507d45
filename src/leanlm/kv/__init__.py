"""KV-cache compression methods. `load_kv` opens any fitted KV artifact for use with a model."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leanlm.errors import ArtifactError


@contextmanager
def kv_cache_for(path: Path | None, loaded) -> Iterator:
    """Yield a cache factory for the KV artifact at `path` (None yields None: the plain cache).

    Inside the block the model attends the way the artifact's cache needs; the model is restored after.
    """
    if path is None:
        yield None
        return
    method = load_kv(path, loaded)
    with method.enabled(loaded.model):
        yield method.cache


def load_kv(path: Path, loaded):
    """Open a fitted KV artifact of any supported kind, checked against the loaded model."""
    from leanlm.kv.matryoshka.method import KIND as MATRYOSHKA, load_matryoshka

    loaders = {MATRYOSHKA: load_matryoshka}
    config_path = Path(path) / "config.json"
    try:
        kind = json.loads(config_path.read_text()).get("kind")
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"{path} is not a readable leanlm artifact ({err}); pass a directory written by `leanlm kv fit`") from err
    if kind not in loaders:
        raise ArtifactError(f"{path} contains a {kind!r} artifact, which is not a KV method; supported: {', '.join(loaders)}")
    return loaders[kind](Path(path), loaded)
