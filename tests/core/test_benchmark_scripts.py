"""The benchmarks run on demand only (``-m benchmark``), so a change that breaks the
scripts they launch goes unseen by CI: toy_clip v2's CNN tower broke the bare
open_clip loop of bench_side_by_side unnoticed. This runs that loop once on 8 images
(the benchmark itself checks its recalls against ctxbench's)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_side_by_side.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_side_by_side_smoke", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bare_open_clip_loop_of_the_side_by_side_benchmark_runs(bench, tmp_path):
    task, _ = bench._write_set(tmp_path, 8)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}   # the installed bytecode, unlike the timed runs
    sides = bench.Sides(tmp_path, task, env, with_clip_benchmark=False)
    _, bare = sides.script("bare")
    assert set(bench.METRICS) <= set(bare["recalls"]), bare
    assert all(0.0 <= bare["recalls"][m] <= 1.0 for m in bench.METRICS)
    assert bare["recalls"]["t2i/R@5"] > 1 / 8, "toy_clip at chance through plain open_clip"
