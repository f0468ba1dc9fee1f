"""The committed embedded run (leaderboards/embedded/, which the slow
test_embedded_leaderboard regenerates and compares) shows each seed paper's finding
in direction, with a 95% interval that excludes zero. These tests read the committed
result files: they assert directions and intervals, never a hard-coded number.

- context_retrieval (seed 000): for the context-aware toy_ctx, query_ctx and both_ctx
  beat no_ctx at L3 and L4 (paired cluster bootstrap over movies), L1 is not hurt; the
  context-free toy_clip cannot run those patterns at all (n/a, not a silent 0).
- multi_instance_retrieval (seed 002): toy_clip's mAP and nDCG intervals lie entirely
  above random's.
- metadata_sentiment (seed 001): fusion > image-only > zero-shot for toy_ctx (both
  gains paired, intervals above 0; its token channel reads the mood words of the
  captions), image-only > zero-shot for toy_clip (whose fusion gain's interval still
  covers 0); for both the pure-noise field is ranked least relevant.
- domain_adaptation (seed 003): source-only drops under style shift (interval above
  0) and adaptation gains beyond both the item and the training-seed noise.
- aesthetics (seed 004): tag-aware > image-only SRCC for toy_clip (paired; the
  synthetic set's intent tags say which degradation was wanted, which no pixel
  shows), and the tag-aware scores still fall with degradation.

toy_ctx is in the default run only where a context is an input (context_retrieval,
metadata_sentiment: BackendSpec.embedded_families).
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


def above_zero(task: str, backend: str, metric: str) -> None:
    value, low, _ = interval(committed(task, backend), metric)
    assert value > 0 and low > 0, f"{task} {backend} {metric} = {value:.3f}, 95% CI low {low:.3f}"


@pytest.mark.parametrize("metric", ["map_avg", "ndcg_avg"])
def test_toy_model_retrieves_clips_well_above_random(metric):
    _, toy_low, _ = interval(committed("multi_instance_retrieval_synthetic", "toy_clip"), metric)
    _, _, random_high = interval(committed("multi_instance_retrieval_synthetic", "random"), metric)
    assert toy_low > random_high, f"toy_clip {metric} CI low {toy_low:.3f} <= random's CI high {random_high:.3f}"


@pytest.mark.parametrize("backend, gains", [("toy_clip", ["image_gain/accuracy"]),
                                             ("toy_ctx", ["fusion_gain/accuracy", "image_gain/accuracy"])])
def test_sentiment_fusion_beats_image_beats_zero_shot(backend, gains):
    for gain in gains:
        above_zero("metadata_sentiment_synthetic", backend, gain)


@pytest.mark.parametrize("backend", ["toy_clip", "toy_ctx"])
def test_sentiment_noise_field_is_ranked_least_relevant(backend):
    rows = committed("metadata_sentiment_synthetic", backend)["tables"]["field contribution"]
    ranks = {row["source"]: row["rank"] for row in rows}
    assert ranks["scene"] == len(rows), f"the pure-noise scene field is not ranked last: {ranks}"


def test_domain_shift_drops_and_adaptation_recovers():
    above_zero("domain_adaptation_synthetic", "toy_clip", "mean/source_only/drop")
    above_zero("domain_adaptation_synthetic", "toy_clip", "mean/adapt/gain")
    above_zero("domain_adaptation_synthetic", "toy_clip", "mean/adapt/gain_seeds")


def test_aesthetics_tags_beat_image_only():
    above_zero("aesthetics_synthetic", "toy_clip", "gain/SRCC")


def test_aesthetics_degradation_is_still_ranked():
    above_zero("aesthetics_degradation_sweep", "toy_clip", "tag_aware/agreement")


def _summary_table(text: str) -> list[str]:
    """The rows of the first markdown table after the "Each task's first headline" line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Each task's first headline metric"))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    return rows


def test_readme_summary_is_the_committed_leaderboards():
    """The README quotes the committed run's summary table; a regenerated leaderboard
    must be pasted there too (otherwise the first numbers a user reads are stale)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    board = (ROOT / "leaderboards" / "embedded.md").read_text(encoding="utf-8")
    assert _summary_table(readme) == _summary_table(board), (
        "README.md's summary table differs from leaderboards/embedded.md: paste the new one")
