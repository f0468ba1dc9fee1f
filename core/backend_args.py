"""``[BACKEND:]KEY=VALUE`` assignments (``--backend-arg``, ``--ray-resources``).

One parser for every flag of that shape, so the CLI, the launchers and the pytest
plugin agree on what ``open_clip:arch=ViT-B-32`` means.
"""

from __future__ import annotations

from typing import Any, Callable

import yaml

from .errors import CtxbenchError


def yaml_scalar(value: str) -> Any:
    """A value as YAML reads a scalar (``3`` -> int, ``true`` -> bool, ``a b`` -> str);
    lists and mappings stay the literal string."""
    try:
        parsed = yaml.safe_load(value) if value else ""
    except yaml.YAMLError:
        return value
    return value if isinstance(parsed, (dict, list)) else parsed


def parse_assignments(items: list[str], backends: list[str], flag: str,
                      convert: Callable[[str], Any] | None = None) -> dict[str, dict[str, Any]]:
    """``key=value`` applies to every backend; ``name:key=value`` to one. ``convert``
    turns the value string into the stored value (default :func:`yaml_scalar`); it
    raises ValueError for a bad value."""
    out: dict[str, dict[str, Any]] = {b: {} for b in backends}
    for item in items:
        key, sep, value = item.partition("=")
        target = None
        if ":" in key:
            target, key = key.split(":", 1)
        if not sep or not key.strip():
            raise CtxbenchError(f"{flag} {item!r}: expected key=value or backend:key=value "
                                "(the key must not be empty)")
        if target is not None and target not in out:
            raise CtxbenchError(f"{flag} {item!r}: backend {target!r} is not among "
                                f"--backend {','.join(backends)}")
        try:
            parsed = (convert or yaml_scalar)(value)
        except ValueError as exc:
            raise CtxbenchError(f"{flag} {item!r}: {exc}") from None
        for b in ([target] if target else backends):
            out[b][key.strip()] = parsed
    return out
