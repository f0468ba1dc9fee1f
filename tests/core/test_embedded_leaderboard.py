"""The committed leaderboards/embedded.md is what `ctxbench run --task all` produces:
CI regenerates it and fails if any number differs by more than 0.002 (the suite
must be deterministic)."""

import re
from pathlib import Path

import pytest
from distutil import run_cli

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"-?\d+\.\d+(?:e-?\d+)?")
TOLERANCE = 0.002


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def compare(committed: str, fresh: str) -> list[str]:
    problems = []
    a, b = table_rows(committed), table_rows(fresh)
    if len(a) != len(b):
        problems.append(f"{len(a)} table rows committed, {len(b)} regenerated")
    for x, y in zip(a, b):
        if NUMBER.sub("#", x) != NUMBER.sub("#", y):
            problems.append(f"row differs:\n  committed:   {x}\n  regenerated: {y}")
            continue
        for u, v in zip(NUMBER.findall(x), NUMBER.findall(y)):
            if abs(float(u) - float(v)) > TOLERANCE:
                problems.append(f"{u} != {v} in row: {x}")
    return problems


def test_compare_detects_drift():
    row = "| random | 0.500 [0.400, 0.600] |"
    assert compare(row, row) == []
    assert compare(row, "| random | 0.503 [0.400, 0.600] |")
    assert not compare(row, "| random | 0.501 [0.400, 0.600] |")
    assert compare(row, "| other | 0.500 [0.400, 0.600] |")


@pytest.mark.slow   # ~2.5 min on 2 cores: CI runs it as its second step (.ci/run)
def test_committed_embedded_leaderboard_regenerates(tmp_path):
    out = tmp_path / "embedded"
    proc = run_cli(["run", "--task", "all", "--output-dir", str(out), "--no-cache", "--no-progress"],
                   timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = (tmp_path / "embedded.md").read_text()
    committed = (ROOT / "leaderboards" / "embedded.md").read_text()
    problems = compare(committed, fresh)
    assert not problems, ("leaderboards/embedded.md is stale or the suite is not deterministic; "
                          "regenerate with `ctxbench run --task all --output-dir leaderboards/embedded "
                          "--rerun` from the repository root:\n"
                          + "\n".join(problems[:20]))
