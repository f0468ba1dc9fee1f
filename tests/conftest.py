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


@pytest.fixture(scope="session")
def plugin_host():
    """The installed plugins (built-in families, first-party backends), loaded once.
    Tests that add plugins build their own with ``load_plugins(extra_plugins=...)``."""
    from ctxbench.plugin_host import load_plugins
    return load_plugins()


@pytest.fixture(scope="session")
def task_catalog(plugin_host):
    """Every installed task, validated once per session."""
    from ctxbench.task_catalog import TaskCatalog
    return TaskCatalog(plugin_host.task_dirs, plugin_host.families, plugin_host.loaders)


@pytest.fixture(autouse=True)
def no_real_data_root(monkeypatch, tmp_path_factory):
    """Tests never read the developer's real datasets: CTXBENCH_DATA points at an empty
    folder unless a test sets it itself."""
    monkeypatch.setenv("CTXBENCH_DATA", str(tmp_path_factory.mktemp("no_data")))
