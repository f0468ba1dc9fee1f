"""The command that runs a conformance report's checks again (its first line).

A registered backend is reproduced by ``ctxbench check-backend NAME --backend-arg
...``; a factory importable by its module and name by a ``python -c`` line that
calls :func:`ctxbench.testing.run_conformance` on it; anything else (a lambda, a
local function, a built object) cannot be named from a shell, and the line says
so and how to rerun it.
"""

from __future__ import annotations

import importlib
import shlex
from typing import Any

from ..backend import BackendSpec


def _value_text(value: Any) -> str:
    """``value`` as ``--backend-arg`` (a YAML scalar) reads it back unchanged."""
    from ..backend_args import yaml_scalar
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if isinstance(value, str) and yaml_scalar(text) != value:
        return "'" + text.replace("'", "''") + "'"   # YAML single-quoted string
    return text


def _importable(obj: Any) -> str | None:
    """``module:qualname`` when ``obj`` is reachable by that name, else None."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or not qualname or "<" in qualname or module == "__main__":
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj or getattr(found, "__func__", None) is obj else None


def _options(module: str, declared: tuple | None, vary_args: bool) -> str:
    """Extra keyword arguments of the ``python -c`` line: the declarations when the
    factory's module holds them under a name, and ``vary_args=False``."""
    out = ""
    if declared:
        names = [k for k, v in vars(importlib.import_module(module)).items() if v is declared]
        out += f", declared_args=m.{names[0]}" if names else ""
    return out + ("" if vary_args else ", vary_args=False")


def reproduce_line(target: Any, name: str, args: dict, device: str,
                   declared: tuple | None = None, vary_args: bool = True) -> str:
    """A shell command giving the same report, or a sentence saying how to get it."""
    if isinstance(target, BackendSpec):
        parts = ["ctxbench", "check-backend", name]
        for key, value in args.items():
            parts += ["--backend-arg", f"{key}={_value_text(value)}"]
        return shlex.join(parts + ["--device", device] + ([] if vary_args else ["--no-vary-args"]))
    where = _importable(target) if callable(target) else None
    if where is None:
        return (f"conformance of {name} (its factory cannot be imported by name: call "
                f"ctxbench.testing.run_conformance(factory, {args!r}, {device!r}) in Python)")
    module, qualname = where.split(":")
    code = (f"from ctxbench.testing import run_conformance; import {module} as m; "
            f"print(run_conformance(m.{qualname}, {args!r}, {device!r}"
            f"{_options(module, declared, vary_args)}).summary())")
    return shlex.join(["python", "-c", code])
