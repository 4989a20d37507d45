"""KV-cache compression methods. `load_kv` opens fitted KV artifacts for use with a model."""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from leanlm.errors import ArtifactError


@contextmanager
def kv_cache_for(paths: Sequence[Path] | Path | None, loaded) -> Iterator:
    """Yield a cache factory for the KV artifacts at `paths` (None or empty yields None: the plain cache).

    Inside the block the model attends the way the artifacts' cache needs; the model is restored after.
    """
    if isinstance(paths, str | Path):
        paths = [Path(paths)]
    if not paths:
        yield None
        return
    method = load_kv(paths, loaded)
    with method.enabled(loaded.model):
        yield method.cache


def load_kv(paths: Sequence[Path] | Path, loaded):
    """Open one fitted KV artifact, or an Attention-Gate and a MatryoshkaKV artifact to combine.

    Each artifact is checked against the loaded model.
    """
    from leanlm.kv.combined import GatedMatryoshkaKV
    from leanlm.kv.gate.method import KIND as GATE, load_gate
    from leanlm.kv.matryoshka.method import KIND as MATRYOSHKA, load_matryoshka

    loaders = {MATRYOSHKA: load_matryoshka, GATE: load_gate}
    paths = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    methods, paths_by_kind = {}, {}
    for path in paths:
        kind = _kind(path)
        if kind not in loaders:
            raise ArtifactError(f"{path} contains a {kind!r} artifact, which is not a KV method; supported: {', '.join(loaders)}")
        if kind in methods:
            raise ArtifactError(f"two {kind} artifacts given ({paths_by_kind[kind]} and {path}); pass at most one of each kind")
        methods[kind] = loaders[kind](path, loaded)
        paths_by_kind[kind] = path

    if len(methods) == 1:
        return next(iter(methods.values()))
    return GatedMatryoshkaKV(gate=methods[GATE], matryoshka=methods[MATRYOSHKA])


def _kind(path: Path) -> str | None:
    if not path.is_dir():
        problem = "not found" if not path.exists() else "not a directory"
        raise ArtifactError(f"KV artifact {path}: {problem}; pass a directory written by `leanlm kv fit`")
    try:
        return json.loads((path / "config.json").read_text()).get("kind")
    except (OSError, json.JSONDecodeError, AttributeError) as err:
        raise ArtifactError(f"{path} is not a readable leanlm artifact ({err}); pass a directory written by `leanlm kv fit`") from err
