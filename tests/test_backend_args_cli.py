"""Every ``ctxbench ...`` example in ``ctxbench --help`` and each subcommand's
``--help`` is executed in-process (``ctxbench.cli.main``) and must exit 0, so a
broken example (``open_clip:model=...``, a results folder that a fresh clone does
not have) is caught. Outputs go to a temporary folder. Examples that need model
weights or real data cannot run offline: they are still parsed, and their backend
arguments checked against the backend's declarations, and the test says why it
did not run them. The two long ones (the whole embedded default, a full toy
training) run with ``-m slow``; the toy training also runs here with 2 steps."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest

from ctxbench.cli import _parse_backend_args, build_parser, main
from ctxbench.plugin_host import load_plugins

ROOT = Path(__file__).resolve().parents[1]
RUNNABLE_BACKENDS = {"random", "toy_clip"}   # need no download


def _parsers(parser: argparse.ArgumentParser, path=()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def help_examples() -> list[str]:
    """Each ``ctxbench ...`` command line shown by any --help (comments dropped)."""
    found: list[str] = []
    for _, parser in _parsers(build_parser()):
        for text in (parser.description or "", parser.epilog or ""):
            for line in text.splitlines():
                line = line.strip().removeprefix("example:").strip().split("  #")[0].strip()
                if line.startswith("ctxbench ") and line not in found:
                    found.append(line)
    return found


def _backends(argv: list[str]) -> list[str]:
    if argv[0] == "check-backend":
        return [argv[1]]
    names = [n for i, a in enumerate(argv) if a == "--backend" for n in argv[i + 1].split(",")]
    return names or ["random", "toy_clip"]   # the embedded default


def why_not_run(argv: list[str]) -> str | None:
    """Why an example cannot run offline in a test, or None."""
    if argv[0] == "export-epic":
        return "needs a run on the real EPIC-KITCHENS-100 data"
    if argv[0] in ("run", "check-backend"):
        heavy = [b for b in _backends(argv) if b not in RUNNABLE_BACKENDS]
        if heavy:
            return f"needs model weights for {', '.join(heavy)}"
    return None


def is_slow(argv: list[str]) -> bool:
    return (argv[0] == "run" and "--backend" not in argv) or (
        argv[:2] == ["toy", "train"] and "--steps" in argv
        and int(argv[argv.index("--steps") + 1]) > 10)


def localised(argv: list[str], tmp: Path) -> list[str]:
    """The example with its outputs moved into ``tmp``."""
    argv = list(argv)
    if "--out" in argv:
        i = argv.index("--out") + 1
        argv[i] = str(tmp / Path(argv[i]).name)
    if argv[0] == "run":
        argv += ["--output-dir", str(tmp / "out"), "--cache-dir", str(tmp / "cache"), "--no-progress"]
    return argv


EXAMPLES = help_examples()


def test_examples_are_found():
    assert len(EXAMPLES) >= 10, EXAMPLES
    assert any("--details" in e for e in EXAMPLES)


@pytest.mark.parametrize("line", EXAMPLES)
def test_help_example(line, tmp_path, monkeypatch, capsys):
    argv = shlex.split(line)[1:]
    args = build_parser().parse_args(argv)   # every example parses (SystemExit otherwise)
    if getattr(args, "backend_arg", None) is not None:
        backends = _backends(argv)
        _parse_backend_args(args.backend_arg, backends, load_plugins())   # declared names, types
    reason = why_not_run(argv)
    if reason:
        pytest.skip(f"{reason}; parsed and its --backend-arg checked")
    if is_slow(argv):
        pytest.skip("long: runs with -m slow (test_long_help_example)")
    monkeypatch.chdir(ROOT)   # examples name repo paths such as tasks/ and leaderboards/
    assert main(localised(argv, tmp_path)) == 0, capsys.readouterr().err[-2000:]


def test_toy_train_example_with_few_steps(tmp_path, monkeypatch):
    line = next(e for e in EXAMPLES if e.startswith("ctxbench toy train"))
    argv = localised(shlex.split(line)[1:], tmp_path)
    argv[argv.index("--steps") + 1] = "2"
    monkeypatch.chdir(ROOT)
    assert main(argv) == 0
    assert any(tmp_path.rglob("*.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("line", [e for e in EXAMPLES if is_slow(shlex.split(e)[1:])])
def test_long_help_example(line, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(localised(shlex.split(line)[1:], tmp_path)) == 0
