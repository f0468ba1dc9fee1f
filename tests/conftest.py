"""Test setup. HF_HUB_OFFLINE must be set before huggingface_hub is imported,
or every hub lookup retries for ~50 s on this offline machine."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def isolated_ctxbench_cache(tmp_path_factory):
    """Point the ctxbench cache (embeddings, captions, hash memo) at a temp folder
    for one test module."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CTXBENCH_CACHE", str(tmp_path_factory.mktemp("ctxcache")))
        yield mp
