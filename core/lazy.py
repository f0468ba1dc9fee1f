"""Hooks that import their implementation on first use.

A family's ``__init__`` is imported by every ``ctxbench list``/``validate``, so it
must not import torch, numpy or matplotlib; its evaluator, loaders, metrics and
plots are declared as ``"module:attribute"`` targets instead::

    evaluate = lazy(".evaluator:evaluate", __name__)
    load_plots = lazy_value(".plots:PLOTS", __name__)

Name such a hook unlike any submodule of the package (not ``plots``, ``data``,
``metrics`` ...): importing ``pkg.plots`` sets the attribute ``pkg.plots`` to the
module and would replace the hook.

Standard library only.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import resolve_name
from typing import Any, Callable

__all__ = ["lazy", "lazy_value", "resolve"]


def _split(target: str, package: str | None) -> tuple[str, str]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"lazy target {target!r} must look like 'package.module:attribute'")
    if module.startswith("."):
        if not package:
            raise ValueError(f"lazy target {target!r} is relative: pass the package (__name__)")
        module = resolve_name(module, package)
    return module, attr


def resolve(target: str, package: str | None = None) -> Any:
    """Import ``"package.module:attr"`` (``attr`` may be dotted; a leading ``.`` is
    relative to ``package``) and return the attribute."""
    module, attr = _split(target, package)
    obj = import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def lazy(target: str, package: str | None = None, *, name: str | None = None,
         doc: str | None = None) -> Callable[..., Any]:
    """A function that imports ``target`` (``"package.module:function"``) on its first
    call and calls it with the same arguments. Its ``__name__`` is the attribute's
    (or ``name``), its ``__doc__`` names the target (or is ``doc``); ``.target``
    holds the absolute target."""
    module, attr = _split(target, package)
    full = f"{module}:{attr}"
    impl: list[Callable[..., Any]] = []

    def call(*args, **kwargs):
        if not impl:
            impl.append(resolve(full))
        return impl[0](*args, **kwargs)

    call.__name__ = call.__qualname__ = name or attr.rsplit(".", 1)[-1]
    call.__doc__ = doc or f"``{full}``, imported on the first call."
    call.__module__ = package or module
    call.target = full
    return call


def lazy_value(target: str, package: str | None = None, *, name: str | None = None,
               doc: str | None = None) -> Callable[[], Any]:
    """A zero-argument function returning the attribute ``target`` names, imported
    on the first call (e.g. a family's ``plots`` hook: ``lazy_value(".plots:PLOTS",
    __name__)``)."""
    module, attr = _split(target, package)
    full = f"{module}:{attr}"

    def value():
        return resolve(full)

    value.__name__ = value.__qualname__ = name or f"load_{attr.rsplit('.', 1)[-1].lower()}"
    value.__doc__ = doc or f"``{full}``, imported on the first call."
    value.__module__ = package or module
    value.target = full
    return value
