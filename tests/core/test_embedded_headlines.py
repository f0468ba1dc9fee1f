"""The committed embedded run (leaderboards/embedded/, which the slow
test_embedded_leaderboard regenerates and compares) shows each seed paper's finding
in direction, with a 95% interval that excludes zero. These tests read the committed
result files: they assert directions and intervals, never a hard-coded number.

- context_retrieval: for the context-aware toy_ctx, query_ctx and both_ctx beat
  no_ctx at L3 and L4 (paired cluster bootstrap over movies), L1 is not hurt; the
  context-free toy_clip cannot run those patterns at all (n/a, not a silent 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED = ROOT / "leaderboards" / "embedded"


def committed(task: str, backend: str) -> dict:
    """The committed result of ``backend`` on ``task`` (exactly one file)."""
    found = []
    for path in sorted((EMBEDDED / task).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("backend") == backend and data.get("status") == "ok":
            found.append(data)
    assert len(found) == 1, f"{EMBEDDED / task}: expected one ok result of {backend}, found {len(found)}"
    return found[0]


def interval(result: dict, metric: str) -> tuple[float, float, float]:
    value = result["metrics"][metric]
    assert value["value"] is not None and value["ci"] is not None, f"{metric}: {value}"
    return value["value"], value["ci"][0], value["ci"][1]


@pytest.mark.parametrize("level", ["L3", "L4"])
@pytest.mark.parametrize("pattern", ["query_ctx", "both_ctx"])
def test_context_beats_no_context_at_context_dependent_levels(level, pattern):
    result = committed("context_retrieval_synthetic", "toy_ctx")
    diff, low, _ = interval(result, f"{level}/{pattern}-no_ctx/R@1")
    assert diff > 0 and low > 0, (f"toy_ctx {level} {pattern} - no_ctx R@1 = {diff:.3f}, 95% CI low "
                                  f"{low:.3f}: the story no longer helps")
    assert result["metrics"][f"{level}/{pattern}-no_ctx/R@1"]["p_value"] < 0.05


@pytest.mark.parametrize("pattern", ["query_ctx", "both_ctx"])
def test_context_does_not_hurt_objects_level(pattern):
    diff, _, high = interval(committed("context_retrieval_synthetic", "toy_ctx"), f"L1/{pattern}-no_ctx/R@1")
    assert high >= 0, f"toy_ctx L1 {pattern} - no_ctx = {diff:.3f}, CI entirely below 0: context hurts L1"


def test_context_free_backend_gets_no_context_patterns():
    result = committed("context_retrieval_synthetic", "toy_clip")
    for level in ("L3", "L4"):
        for pattern in ("query_ctx", "both_ctx"):
            metric = result["metrics"][f"{level}/{pattern}/R@1"]
            assert metric["value"] is None and metric["note"].startswith("n/a"), metric


def test_cluster_bootstrap_has_enough_movies():
    """The paper's 50 movies x 5 images: enough clusters for a calibrated interval."""
    details = committed("context_retrieval_synthetic", "toy_ctx")["details"]
    assert details["groups"] >= 50 and details["pool_size"] >= 250, details
