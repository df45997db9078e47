"""On-disk cache of traces, keyed by everything that shapes them.

A key covers the model's fingerprint (its hyperparameters), the phase and shapes, the dtype, the
versions of torch and transformers, the trace schema version and a hash of the tracing code itself,
so a stale entry is never read.  Entries are Parquet files written atomically (temporary file, then
rename): a killed run leaves no half-written trace.  The cache lives in ``$MLHW_CACHE_DIR`` or
``~/.cache/mlhw-sim``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd

from workloads.schema import TRACE_SCHEMA_VERSION

_CODE_FILES = ("tracer.py", "build.py", "schema.py", "zoo.py", "api.py")


def cache_dir() -> Path:
    root = os.environ.get("MLHW_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "mlhw-sim")
    return Path(root) / "traces"


@lru_cache(maxsize=1)
def _environment() -> dict:
    here = Path(__file__).parent
    code = hashlib.sha256()
    for name in _CODE_FILES:
        code.update((here / name).read_bytes())
    versions = {}
    for dist in ("torch", "transformers"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return {"schema": TRACE_SCHEMA_VERSION, "code": code.hexdigest()[:16], **versions}


def key(**parts) -> str:
    blob = json.dumps({**parts, **_environment()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load(k: str) -> pd.DataFrame | None:
    path = cache_dir() / f"{k}.parquet"
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # a corrupt entry is a miss; it is rewritten
        return None


def store(k: str, df: pd.DataFrame) -> Path:
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{k}.parquet"
    fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
    os.close(fd)
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
