import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _trace_cache(tmp_path_factory):
    """Every test session gets its own empty trace cache (nothing read from or written to ~)."""
    path = tmp_path_factory.mktemp("mlhw-cache")
    old = os.environ.get("MLHW_CACHE_DIR")
    os.environ["MLHW_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MLHW_CACHE_DIR", None)
    else:
        os.environ["MLHW_CACHE_DIR"] = old
