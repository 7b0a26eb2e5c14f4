"""On-disk cache of exported graphs and built engines, validated before anything is run.

Every artifact has a JSON record beside it (`<file>.json`): its byte count, SHA-256 and identity
(checkpoint digest, subset, size, and the versions of what built it). An artifact is used only
when its bytes match the record and the record's identity is the one asked for; graphs must also
carry the same identity in their own metadata. Anything else (a graph of another checkpoint, a
truncated or corrupted file, one built by another runtime version) is rebuilt, never run. Files and
records are written to a temporary name and renamed, so a crash or a concurrent writer leaves either
a complete artifact or one that fails validation.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable

from torch import nn

from charm_core.checkpoint import tensor_digest
from charm_core.runtimes.graph import DEFAULT_TOLERANCE, GraphSpec, export_graph, graph_metadata

log = logging.getLogger(__name__)
ENV_VAR = "CHARM_CACHE_DIR"


def default_cache_dir() -> Path:
    """$CHARM_CACHE_DIR, else ~/.cache/charm_ros (or $XDG_CACHE_HOME/charm_ros)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charm_ros"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class StaleArtifact(Exception):
    """A cached file that must not be used; the message says why."""


def record_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def write_artifact(path: Path, data: bytes, identity: dict[str, str]) -> None:
    """Store `data` at `path` with its record (the record last: it is what makes the file valid)."""
    record = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "identity": identity}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    atomic_write(record_path(path), json.dumps(record, indent=1, sort_keys=True).encode())


def read_verified(path: Path, identity: dict[str, str],
                  embedded: Callable[[bytes], dict[str, str]] | None = None) -> bytes:
    """The bytes at `path` if they match their record and `identity`; StaleArtifact otherwise.

    `embedded` reads the identity a file carries itself (graph metadata), which must match too.
    The caller runs these very bytes, so the file cannot change between check and use.
    """
    if not path.is_file():
        raise StaleArtifact("not built yet")
    try:
        record = json.loads(record_path(path).read_text())
        size, sha, stored = int(record["bytes"]), str(record["sha256"]), dict(record["identity"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StaleArtifact(f"no readable record ({type(exc).__name__}: {exc})") from exc
    data = path.read_bytes()
    if len(data) != size:
        raise StaleArtifact(f"{len(data)} bytes where its record says {size} (truncated or overwritten)")
    if hashlib.sha256(data).hexdigest() != sha:
        raise StaleArtifact("contents do not match the SHA-256 in its record (corrupted)")
    _compare(stored, identity, "its record")
    if embedded is not None:
        try:
            carried = embedded(data)
        except ValueError as exc:
            raise StaleArtifact(str(exc)) from exc
        _compare(carried, identity, "its metadata")
    return data


def _compare(found: dict[str, str], wanted: dict[str, str], where: str) -> None:
    for key, value in wanted.items():
        if found.get(key) != value:
            raise StaleArtifact(f"{where} has {key} = {found.get(key)!r}, this run needs {value!r}")


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, then rename: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_build(path: Path, identity: dict[str, str], build: Callable[[], bytes], verb: str,
                 embedded: Callable[[bytes], dict[str, str]] | None = None) -> tuple[bytes, str]:
    """(bytes, how): the artifact at `path` when valid (see read_verified), else `build()` stored
    there; `how` is "cached" or "<verb> in N s (why the cached one was not used)"."""
    try:
        return read_verified(path, identity, embedded), "cached"
    except StaleArtifact as exc:
        reason = str(exc)
    if path.exists():
        log.warning("rebuilding %s: %s", path, reason)
    start = time.perf_counter()
    data = build()
    write_artifact(path, data, identity)
    return data, f"{verb} in {time.perf_counter() - start:.1f} s ({reason})"


class GraphCache:
    """Artifacts under <root>/<kind>/<checkpoint digest>/<H>x<W>/<subset><suffix>."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, spec: GraphSpec, kind: str = "graphs", suffix: str = ".onnx") -> Path:
        h, w = spec.size
        return self.root / kind / spec.checkpoint_sha256[:16] / f"{h}x{w}" / f"{spec.name}{suffix}"

    def graph(self, spec: GraphSpec, model: Callable[[], nn.Module],
              tolerance: float = DEFAULT_TOLERANCE) -> tuple[bytes, str]:
        """(verified graph bytes, how): from the cache when valid, else exported from `model()` (an
        eval-mode float32 CPU model, only asked for when an export is needed) and stored."""
        return cached_build(self.path(spec), spec.metadata(), lambda: export_graph(model(), spec, tolerance).data,
                            "exported", graph_metadata)

def model_digest(model: nn.Module, config_json: str) -> str:
    """SHA-256 naming an in-memory model's graphs: its config plus every tensor of its state."""
    return hashlib.sha256(f"{config_json}|{tensor_digest(model.state_dict())}".encode()).hexdigest()
