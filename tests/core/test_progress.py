"""Progress of a running cell (issue 16): nothing for a short cell; past the delay an
updating bar line on a terminal, plain periodic lines otherwise; none with
``--no-progress``. Driven by a fake clock or tiny intervals, never long sleeps."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import memo_toy_plugin as toy
from ctxbench import inputs
from ctxbench.plugin_host import load_plugins
from ctxbench.progress import CellProgress, bar
from ctxbench.runner import Runner, RunOptions
from ctxbench.task_catalog import TaskCatalog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_fills_in_proportion():
    assert bar(0, 10, 10) == "[..........]" and bar(5, 10, 10) == "[#####.....]"
    assert bar(10, 10, 10) == "[##########]" and bar(3, 0, 4) == "[####]"


def test_plain_lines_start_after_the_delay_then_come_every_interval():
    clock, out = Clock(), io.StringIO()
    p = CellProgress("b x t", out, tty=False, delay=2, interval=10, clock=clock)
    clock.now += 1.9
    assert p.tick() is None and out.getvalue() == ""
    clock.now += 0.2
    assert p.tick() == "[ctxbench] b x t: evaluating, 2s"
    p.update(240, 500, "image")
    clock.now += 5
    assert p.tick() is None                       # not due yet
    clock.now += 5
    assert p.tick() == "[ctxbench] b x t: 240/500 images encoded, 12s"
    assert out.getvalue().splitlines() == p.lines and "\r" not in out.getvalue()


def test_a_terminal_gets_one_line_redrawn_in_place_and_erased():
    clock, out = Clock(), Terminal()
    p = CellProgress("b x t", out, delay=2, clock=clock)
    assert p.tty
    clock.now += 3
    p.update(240, 500, "image")
    assert p.tick() == "[ctxbench] b x t: [#########...........] 240/500 images, 3s"
    assert p.tick() is None                       # unchanged: not redrawn
    p.update(500, 500, "image")
    p.tick()
    p.stop()
    text = out.getvalue()
    assert "\n" not in text and text.count("\r") == 4   # two draws, then the erase
    assert text.endswith("\r" + " " * len(p.lines[-1]) + "\r")


def test_a_short_cell_shows_nothing():
    out = io.StringIO()
    with CellProgress("b x t", out, tty=False, delay=5, refresh=0.01):
        pass
    assert out.getvalue() == ""


@pytest.fixture(scope="module")
def host():
    return load_plugins(extra_plugins=(toy,), entry_points=False)


def _run(host, root, progress=True, backend_args=None, **options):
    toy.reset()
    inputs._FILE_KEYS.clear()
    tasks = TaskCatalog([root / "tasks"], host.families, host.loaders).select([toy.TASK])
    out, log = io.StringIO(), []
    opts = RunOptions(output_dir=root / "out", cache_dir=root / "cache", progress=progress,
                      rerun=True, log=log.append, progress_stream=out, progress_delay=0.02,
                      progress_interval=0.05, batch_size=1, **options)
    (result,) = Runner(host, opts).run(tasks, [("pixels", dict(backend_args or {}))])
    assert result.status == "ok", result.error
    return out.getvalue(), "\n".join(log)


def test_a_slow_cell_prints_periodic_lines_when_not_a_terminal(host, tmp_path):
    toy.write_task(tmp_path, protocol={"sleep": 0.3})
    shown, log = _run(host, tmp_path, backend_args={"delay": 0.1})
    lines = shown.splitlines()
    assert len(lines) >= 3, shown
    assert all(line.startswith(f"[ctxbench] pixels(delay=0.1) x {toy.TASK}: ") for line in lines)
    assert any("/4 images encoded" in line for line in lines), shown
    assert any("evaluating" in line for line in lines), shown
    assert "0 of 4 encodings cached" in log


def test_no_progress_prints_none(host, tmp_path):
    toy.write_task(tmp_path, protocol={"sleep": 0.2})
    shown, log = _run(host, tmp_path, progress=False, backend_args={"delay": 0.05})
    assert shown == "" and "ok in" in log


def _cli(tmp_path, *flags):
    env = {**os.environ, "CTXBENCH_PROGRESS_DELAY": "0", "CTXBENCH_PROGRESS_INTERVAL": "0.05"}
    cmd = [sys.executable, "-m", "ctxbench.cli", "run", "--task", "context_retrieval_synthetic",
           "--backend", "random", "--limit", "8", "--device", "cpu", "--rerun",
           "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *flags]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stderr


def test_cli_progress_lines_and_no_progress(tmp_path):
    shown = _cli(tmp_path)
    progress = [line for line in shown.splitlines()
                if line.startswith("[ctxbench] random x context_retrieval_synthetic: ")
                and not line.split(": ", 1)[1].startswith("ok")]
    assert progress, shown
    quiet = _cli(tmp_path, "--no-progress")
    assert [line for line in quiet.splitlines() if "context_retrieval_synthetic: " in line] == \
        [line for line in quiet.splitlines() if ": ok in" in line]
    assert "encodings cached" in quiet
