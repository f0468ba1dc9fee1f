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
