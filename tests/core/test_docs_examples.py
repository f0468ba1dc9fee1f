"""Every example in the docs and in ``--help`` is executed or, where it cannot run
offline, at least parsed and checked against the installed names.

Sources: the fenced code blocks of README.md, CONTRIBUTING.md, DEVELOPERS.md and
docs/*.md, and the ``example:`` lines of every ``ctxbench <command> --help``
(``ctxbench.cli.EXAMPLES``).

- ``ctxbench ...`` command lines (also after ``srun``, ``torchrun -m ctxbench.cli``,
  ``ray symmetric-run ... --`` and in a Kubernetes ``command:`` list): every one is
  parsed by the CLI's own argparse parser, its task / group names are resolved by
  the task catalog, its backend names by the plugin host, and its ``--backend-arg``
  keys checked against the backend's declared arguments. The offline-runnable ones
  are then executed in-process through ``ctxbench.cli.main`` (paths a command would
  write to replaced by a temporary folder); the others are listed in ``NOT_RUN``
  with the reason. A command line that is in neither list fails the test, so a new
  example has to be classified.
- ``python`` blocks are compiled; the plugin example of CONTRIBUTING.md is executed,
  its backend built through its ``BackendSpec`` and put through the conformance kit.
- ``yaml`` blocks are parsed; task files are validated with ``parse_task`` against
  the installed families and loaders. ``toml`` blocks are parsed.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "DEVELOPERS.md",
             *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"", "bash", "sh", "shell", "console"}

# Command lines that are not executed here, keyed by their first words (after
# ``ctxbench``), with the reason. They are still parsed and their names checked.
NOT_RUN: dict[str, str] = {
    "run --task all": "the full embedded run (~50 s on 2 cores); "
                      "tests/core/test_embedded_leaderboard.py runs exactly it and compares it "
                      "with the committed leaderboard",
    "run --task context_retrieval_lsmdc": "needs the LSMDC data and model weights",
    "run --task metadata_sentiment_fi": "needs the FI data and model weights",
    "run --task epic100_mir": "needs EPIC-KITCHENS-100 and model weights",
    "run --task geoimnet_usa_asia": "needs GeoNet and model weights",
    "run --task ava": "needs AVA and model weights",
    "run --task context_retrieval --backend random,open_clip": "pretrained=openai needs the "
                                                               "weights (network)",
    "run --launcher": "a cluster launcher (Slurm / torchrun / Kubernetes / Ray); "
                      "tests/core/test_launchers.py runs the launchers",
    "run --data-parallel": "torchrun on several GPUs; tests/test_distributed.py covers it",
    "export-epic": "needs a finished epic100_mir run (real data)",
    "check-backend my_backend": "the reader's own plugin (a placeholder name)",
    "check-backend open_clip": "needs a local open_clip checkpoint",
    "toy train": "retrains the shipped model (~20-25 min)",
    "leaderboard --results /shared": "a cluster run's shared folder",
    "leaderboard --results runs/all": "the output of the torchrun example above",
}
# ``run --task all --limit 20`` is executed on one family (multi_instance_retrieval, both
# default backends) instead of all six: the whole matrix takes 1-2 minutes even at
# --limit 20 (domain_adaptation trains 3 seeds x 12 pairs whatever the limit), and
# the full matrix is run by tests/core/test_embedded_leaderboard.py anyway.
LIMITED_RUN_TASK = "multi_instance_retrieval"


# ----------------------------------------------------------------------------- extraction
def fenced_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, text, first line number) of every fenced code block of ``path``."""
    blocks, lang, start, buf = [], None, 0, []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        m = re.match(r"^\s*```\s*([\w+-]*)\s*$", line)
        if m and lang is None:
            lang, start, buf = m.group(1).lower(), i + 1, []
        elif re.match(r"^\s*```\s*$", line) and lang is not None:
            blocks.append((lang, "\n".join(buf), start))
            lang = None
        elif lang is not None:
            buf.append(line)
    assert lang is None, f"{path.name}: unclosed code block from line {start}"
    return blocks


def _ctxbench_args(tokens: list[str]) -> list[str] | None:
    """The arguments after ``ctxbench`` (or ``-m ctxbench.cli``) in a tokenised line."""
    for i, tok in enumerate(tokens):
        if tok == "ctxbench" or (tok == "ctxbench.cli" and i and tokens[i - 1] == "-m"):
            args = tokens[i + 1:]
            for j, a in enumerate(args):       # stop at shell operators
                if a in ("|", "&&", ";", "||", ">", ">>"):
                    return args[:j]
            return args
    return None


def shell_commands(text: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue
        args = _ctxbench_args(tokens)
        if args:
            out.append(args)
    return out


def yaml_commands(doc) -> list[list[str]]:
    """``command: ["ctxbench", ...]`` lists anywhere in a YAML document."""
    found = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "command" and isinstance(v, list) and v and v[0] == "ctxbench":
                found.append([str(x) for x in v[1:]])
            else:
                found += yaml_commands(v)
    elif isinstance(doc, list):
        for v in doc:
            found += yaml_commands(v)
    return found


def help_examples() -> list[tuple[str, list[str]]]:
    from ctxbench.cli import EXAMPLES
    out = []
    for command, text in EXAMPLES.items():
        for line in text.splitlines():
            line = line.strip().removeprefix("example:").strip()
            args = _ctxbench_args(shlex.split(line))
            assert args, f"--help example of {command!r} is not a ctxbench command: {line!r}"
            out.append((f"ctxbench {command} --help", args))
    return out


def all_commands() -> list[tuple[str, list[str]]]:
    cmds = []
    for path in DOC_FILES:
        for lang, text, line in fenced_blocks(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if lang in SHELL:
                cmds += [(where, c) for c in shell_commands(text)]
            elif lang in ("yaml", "yml"):
                cmds += [(where, c) for c in yaml_commands(yaml.safe_load(text))]
    return cmds + help_examples()


def classify(args: list[str]) -> str | None:
    """The NOT_RUN key of a command line, or None when it is run here."""
    line = " ".join(args)
    for key in NOT_RUN:
        if line == key or line.startswith(key + " ") or (key.endswith("/shared") and line.startswith(key)):
            if key == "run --task all" and "--limit" in args:
                return None
            return key
    return None


COMMANDS = all_commands()


def test_examples_were_found():
    """The extraction itself works: the README's three commands and the CLI examples
    are among the command lines."""
    lines = {" ".join(a) for _, a in COMMANDS}
    assert {"run --task all", "validate tasks/", "run --task all --limit 20"} <= lines
    assert len(COMMANDS) > 25


def test_not_run_table_has_no_stale_entry():
    used = {classify(a) for _, a in COMMANDS}
    assert not set(NOT_RUN) - used, f"NOT_RUN entries that match no example: {set(NOT_RUN) - used}"


# ----------------------------------------------------------------------------- checks of every line
@pytest.mark.parametrize("where,args", COMMANDS, ids=[f"{w} {' '.join(a)[:60]}" for w, a in COMMANDS])
def test_every_command_parses_and_names_exist(where, args, plugin_host, task_catalog):
    """argparse accepts the line; its tasks, groups, backends and backend arguments
    exist (a renamed flag, task or backend argument is caught here)."""
    from ctxbench.backend_args import parse_assignments
    from ctxbench.cli import build_parser
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"{where}: `ctxbench {' '.join(args)}` is refused by the parser (exit {exc.code})")
    if ns.command != "run":
        if ns.command == "check-backend" and ns.name != "my_backend":
            plugin_host.backends.get(ns.name)
            _check_backend_args(plugin_host, [ns.name], ns.backend_arg, where)
        return
    tasks = [t for sel in (ns.task or ["all"]) for t in sel.split(",")]
    catalog = task_catalog
    files = [ROOT / t for t in tasks if t.endswith((".yaml", ".yml"))]
    if files or ns.include_path:   # the reader's own task files, loaded as the CLI loads them
        from ctxbench.task_catalog import TaskCatalog
        catalog = TaskCatalog(plugin_host.task_dirs + [ROOT / d for d in ns.include_path],
                              plugin_host.families, plugin_host.loaders, task_files=files)
        tasks = [str(ROOT / t) if t.endswith((".yaml", ".yml")) else t for t in tasks]
    selected = catalog.select(tasks)
    assert selected, f"{where}: --task {tasks} selects no task"
    names = [n.strip() for b in ns.backend for n in b.split(",") if n.strip()]
    for n in names:
        plugin_host.backends.get(n)          # unknown -> error with suggestions
    if not names:
        names = [n for n in plugin_host.backends.names()
                 if plugin_host.backends.get(n).embedded_default]
    parse_assignments(ns.backend_arg, names, "--backend-arg")
    _check_backend_args(plugin_host, names, ns.backend_arg, where)


def _check_backend_args(host, names, items, where):
    """Each --backend-arg key is one the backend declares (when it declares any)."""
    from ctxbench.backend_args import parse_assignments
    try:
        from ctxbench.backend import check_backend_args
    except ImportError:                       # older API: declarations not available
        return
    for name, args in parse_assignments(items, names, "--backend-arg").items():
        spec = host.backends.get(name)
        declared = {a.name for a in getattr(spec, "args", ())}
        if declared:
            unknown = set(args) - declared
            assert not unknown, f"{where}: backend {name} has no argument(s) {sorted(unknown)}"
            check_backend_args(spec, args)


# ----------------------------------------------------------------------------- executed lines
def _runnable():
    seen, out = set(), []
    for where, args in COMMANDS:
        key = tuple(args[:args.index("--out")] if "--out" in args else args)  # --out goes to tmp
        if classify(args) is None and key not in seen:
            seen.add(key)
            out.append((where, args))
    return out


RUNNABLE = _runnable()


def _substitute(args: list[str], tmp: Path) -> list[str]:
    """Write where the test may: --output-dir / --out / --leaderboard / --report into
    ``tmp``; a limited run on one family (LIMITED_RUN_TASK, see above)."""
    args = list(args)
    if args[0] == "run":
        for flag in ("--output-dir", "--leaderboard", "--report"):
            if flag in args:
                i = args.index(flag)
                args[i + 1] = str(tmp / Path(args[i + 1]).name)
        if "--output-dir" not in args:
            args += ["--output-dir", str(tmp / "run")]
        if args[:3] == ["run", "--task", "all"]:
            args[2] = LIMITED_RUN_TASK
        args += ["--no-progress"]
    elif args[0] in ("leaderboard", "report"):
        if "--out" in args:
            i = args.index("--out")
            args[i + 1] = str(tmp / Path(args[i + 1]).name)
        else:
            args += ["--out", str(tmp / ("board.md" if args[0] == "leaderboard" else "report.html"))]
    return args


@pytest.fixture(scope="module")
def in_repo_root():
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        yield


@pytest.mark.parametrize("where,args", RUNNABLE, ids=[" ".join(a)[:60] for _, a in RUNNABLE])
def test_runnable_command_succeeds(where, args, tmp_path, in_repo_root, isolated_ctxbench_cache,
                                   capsys):
    from ctxbench.cli import main
    argv = _substitute(args, tmp_path)
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 0, f"{where}: `ctxbench {' '.join(args)}` exited {rc}\n{err[-3000:]}"
    if args[0] == "run":
        assert list((tmp_path / "run").rglob("*.json")), "the run wrote no result"


def test_the_readme_run_command_writes_to_results():
    """README: without --output-dir a run writes to results/<name> (git-ignored)."""
    from ctxbench.cli import default_output_dir
    assert default_output_dir("embedded") == Path("results") / "embedded"
    assert "results/" in (ROOT / ".gitignore").read_text().split() or \
        "/results/" in (ROOT / ".gitignore").read_text().split()


# ----------------------------------------------------------------------------- python, yaml, toml
def _blocks(langs):
    return [(f"{p.relative_to(ROOT)}:{line}", text) for p in DOC_FILES
            for lang, text, line in fenced_blocks(p) if lang in langs]


PYTHON = _blocks({"python", "py"})
YAML = _blocks({"yaml", "yml"})
TOML = _blocks({"toml"})


@pytest.mark.parametrize("where,text", PYTHON, ids=[w for w, _ in PYTHON])
def test_python_blocks_compile(where, text):
    compile(text, where, "exec")


def test_contributing_plugin_example_passes_the_conformance_kit():
    """The first python block of CONTRIBUTING.md is a whole plugin module: run it, build
    the backend through its BackendSpec and put it through the kit."""
    from ctxbench.backend import BackendSpec
    from ctxbench.testing.conformance import run_conformance
    where, text = next((w, t) for w, t in PYTHON if w.startswith("CONTRIBUTING.md")
                       and "class MyBackend" in t)
    namespace: dict = {}
    exec(compile(text, where, "exec"), namespace)
    specs = namespace["ctxbench_backends"]()
    assert len(specs) == 1 and isinstance(specs[0], BackendSpec)
    backend = specs[0].factory(device="cpu")
    assert backend.fingerprint()
    report = run_conformance(specs[0], {}, "cpu", vary_args=False)
    assert report.ok, report.summary()


@pytest.mark.parametrize("where,text", YAML, ids=[w for w, _ in YAML])
def test_yaml_blocks_parse_and_task_files_validate(where, text, tmp_path, plugin_host):
    from ctxbench.task_config import parse_task
    doc = yaml.safe_load(text)
    assert doc is not None, where
    if isinstance(doc, dict) and {"task", "family"} <= set(doc):
        path = tmp_path / f"{doc['task']}.yaml"
        path.write_text(text)
        spec = parse_task(path, plugin_host.families, plugin_host.loaders)
        assert spec.name == doc["task"]


@pytest.mark.parametrize("where,text", TOML, ids=[w for w, _ in TOML])
def test_toml_blocks_parse(where, text):
    tomllib.loads(text)
