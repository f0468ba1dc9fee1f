"""The commands a user types to look around (`ctxbench --help`, every `ctxbench list
...`, `ctxbench validate`) and every module the plugin host imports for them stay
light: none imports torch, transformers, open_clip, matplotlib, scipy, datasets,
PIL or numpy (seconds of start-up each, and absent on a machine set up only to
write tasks). Heavy libraries are imported inside the functions that use them
(see ctxbench.lazy for the family hooks, ``TYPE_CHECKING`` for type hints).

Each case runs in a fresh interpreter with an import watcher first on
``sys.meta_path``: a failure names the heavy module and the chain of modules and
functions that imported it. New ``list`` subcommands and new plugins (built-in
families, first-party entry points) are picked up without editing this file.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctxbench.plugin_host import BUILTIN_MODULES, ENTRY_POINT_GROUP

HEAVY = ("torch", "transformers", "open_clip", "matplotlib", "scipy", "datasets", "PIL", "numpy",
         "pandas", "safetensors", "sklearn", "huggingface_hub", "tokenizers", "accelerate")
FIRST_PARTY = ("ctxbench", "ctxbench_plugins", "ctxbench_tasks")

# Runs in the child: argv[1] = HEAVY (JSON), argv[2] = "cli", "plugin" or "host",
# argv[3] = the command's argv, the plugin module or null (JSON). Prints one JSON line:
# {"imported": {heavy module: [what asked for it, its importers innermost first]}, ...}.
PROBE = r'''
import contextlib, io, json, sys, traceback
HEAVY = set(json.loads(sys.argv[1]))
mode, payload = sys.argv[2], json.loads(sys.argv[3])
preloaded = sorted(m for m in HEAVY if m in sys.modules)
imported = {}

def chain():
    """The modules being imported and ctxbench's functions running, innermost first;
    of a run of frames inside one other library only its outermost module is kept."""
    out, last_top = [], None
    for frame, line in traceback.walk_stack(None):
        name = frame.f_globals.get("__name__") or "?"
        code = frame.f_code
        if name == "__main__" or name.startswith(("importlib", "_frozen_importlib")):
            continue
        top = name.partition(".")[0]
        where = f"{code.co_filename}:{line}"
        if top in ("ctxbench", "ctxbench_plugins", "ctxbench_tasks"):
            step = (f"module {name} ({where})" if code.co_name == "<module>" else
                    f"{name}.{getattr(code, 'co_qualname', code.co_name)}() ({where})")
        elif code.co_name == "<module>":
            step = f"module {name} ({where})"
            if top == last_top:
                out.pop()   # keep the outermost frame of that library
        else:
            continue
        out.append(step)
        last_top = top
    return out

class Watch:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.partition(".")[0]
        if top in HEAVY and top not in imported and top not in preloaded:
            imported[top] = [fullname] + chain()
        return None

sys.meta_path.insert(0, Watch())
rc, failures, output = None, [], io.StringIO()
with contextlib.redirect_stdout(output):
    if mode == "cli":
        from ctxbench.cli import main
        try:
            rc = main(payload)
        except SystemExit as exc:
            rc = exc.code
    elif mode == "host":
        from ctxbench.plugin_host import load_plugins
        failures = [f"{f.plugin} ({f.source}): {f.error}" for f in load_plugins().failures]
    else:
        import importlib
        module = importlib.import_module(payload)
        for hook in ("ctxbench_backends", "ctxbench_dataset_loaders", "ctxbench_metrics",
                     "ctxbench_families", "ctxbench_task_dirs"):
            if callable(getattr(module, hook, None)):
                getattr(module, hook)()   # as the plugin host calls it for `ctxbench list`
        rc = 0
imported_after = sorted(m for m in HEAVY if m in sys.modules and m not in preloaded)
print(json.dumps({"rc": rc, "imported": imported, "in_sys_modules": imported_after,
                  "preloaded": preloaded, "plugin_failures": failures,
                  "output": output.getvalue()[-1500:]}))
'''


def _list_choices() -> list[str]:
    from ctxbench.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return list(next(a for a in sub.choices["list"]._actions if a.dest == "what").choices)


def _task_dir() -> str:
    import ctxbench_tasks
    return str(Path(ctxbench_tasks.__file__).parent)


def _entry_points() -> list[md.EntryPoint]:
    return sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)


def _third_party_modules() -> set[str]:
    """Plugin modules installed by other distributions: not this test's business."""
    return {ep.module for ep in _entry_points()
            if ep.module.partition(".")[0] not in FIRST_PARTY}


COMMANDS = ([["--help"]] + [["list", what] for what in _list_choices()]
            + [["validate", _task_dir()]])
PLUGIN_MODULES = sorted(set(BUILTIN_MODULES) | {ep.module for ep in _entry_points()
                                                 if ep.module.partition(".")[0] in FIRST_PARTY})


def _probe(mode: str, payload) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), mode,
                          json.dumps(payload)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip(), (
        f"the probe failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _explain(what: str, result: dict, ignore: set[str] = frozenset()) -> str:
    """'' when nothing heavy was imported, else which module and through what."""
    lines = []
    for heavy, (asked, *importers) in sorted(result["imported"].items()):
        if any(f"module {m} (" in step for m in ignore for step in importers):
            continue   # a third-party plugin installed here imports it: not ctxbench's doing
        named = heavy if asked == heavy else f"{heavy} (as {asked})"
        lines.append(f"{what} imported {named}, through:\n    "
                     + "\n    <- ".join(importers or ["(no importing frame)"]))
    missed = set(result["in_sys_modules"]) - set(result["imported"])
    lines += [f"{what} left {m} in sys.modules (imported past the watcher)" for m in sorted(missed)]
    lines += [f"{what}: {m} was already imported at interpreter start-up (a .pth file?); "
              f"it cannot be checked" for m in result["preloaded"]]
    if lines:
        lines.append("Import it inside the function that needs it (type hints: "
                     "`from __future__ import annotations` + `if TYPE_CHECKING:`; family hooks: "
                     "ctxbench.lazy).")
    return "\n".join(lines)


def _fail_if(message: str) -> None:
    if message:
        pytest.fail(message, pytrace=False)


@pytest.mark.parametrize("argv", COMMANDS,
                         ids=lambda argv: " ".join(Path(a).name if "/" in a else a for a in argv))
def test_command_imports_no_heavy_library(argv):
    result = _probe("cli", argv)
    assert result["rc"] == 0, (f"ctxbench {' '.join(argv)} exited {result['rc']} (so the check "
                               f"below would prove little):\n{result['output']}")
    _fail_if(_explain(f"`ctxbench {' '.join(argv)}`", result, _third_party_modules()))


@pytest.mark.parametrize("module", PLUGIN_MODULES)
def test_plugin_module_and_its_hooks_import_no_heavy_library(module):
    """Every module the plugin host imports for `ctxbench list` (built-in families and
    first-party entry points), with its registration hooks called."""
    _fail_if(_explain(f"importing {module} and calling its hooks", _probe("plugin", module)))


def test_first_party_plugins_load_so_the_checks_above_mean_something():
    """A plugin that fails to import imports nothing heavy either: the host must
    report no failure for the command checks to be worth anything."""
    result = _probe("host", None)
    assert result["plugin_failures"] == [], result["plugin_failures"]
    _fail_if(_explain("load_plugins()", result, _third_party_modules()))
    assert set(PLUGIN_MODULES) >= {"ctxbench_plugins.random_backend", *BUILTIN_MODULES}
