"""The ``fingerprint_covers_args`` check: does the fingerprint follow every argument?

The fingerprint is written into every result and read by people comparing runs,
so it must be honest: two builds that embed differently must not claim the same
identity. (ctxbench's own cache key also folds in the arguments, so this is about
the results, not only the cache.) For each declared argument
(:class:`~ctxbench.backend.BackendArg`) with an obvious second value - its
``variant``, a flipped bool, another of its ``choices``, a number moved - the
backend is built again with that value and encodes a few probe inputs: if the
embeddings (or capabilities) change and the fingerprint does not, the check fails
naming the argument. Arguments without an obvious alternative (paths, model ids,
free text) and those declared ``vary=False`` are skipped and listed.
"""

from __future__ import annotations

import gc
from typing import Any, Callable, Sequence

import torch

from ..backend import NO_VARIANT, BackendArg

_NONE = object()


def alternative(arg: BackendArg, current: Any) -> tuple[Any, str]:
    """(second value, "") for ``arg`` whose value is ``current``, or (_NONE, why not)."""
    if not arg.vary:
        return _NONE, "not varied (vary=False)"
    if arg.variant is not NO_VARIANT and arg.variant != current:
        return arg.variant, ""
    if arg.type is bool or isinstance(current, bool):
        return (not current, "") if current is not None else (_NONE, "no default")
    if arg.choices:
        for choice in arg.choices:
            if str(choice).lower() != str(current).lower():
                return choice, ""
    if isinstance(current, int):
        return current + 1, ""
    if isinstance(current, float):
        return (current * 2 if current else 1.0), ""
    return _NONE, "no obvious alternative (path, model id or free text)"


def _outputs(backend, images, texts, contexts) -> tuple[dict, list[torch.Tensor]]:
    """Capabilities and embeddings of a few probes (with contexts on declared sides)."""
    caps = backend.capabilities
    k = min(3, len(images))
    mixed = [None, contexts[0], contexts[1]][:k]
    outs = []
    with torch.inference_mode():
        outs.append(backend.encode_images(list(images[:k]), mixed if caps.image_context else [None] * k))
        outs.append(backend.encode_texts(list(texts[:k]), mixed if caps.text_context else [None] * k))
    return caps, [o.detach().to("cpu", torch.float32) for o in outs]


def _differ(a: list[torch.Tensor], b: list[torch.Tensor], floor: float) -> bool:
    return any(x.shape != y.shape or float((x - y).abs().max()) > floor for x, y in zip(a, b))


def covers(backend, build_with: Callable[..., Any], declared: Sequence[BackendArg], args: dict,
           probes: tuple, floor: float) -> tuple[list[str], list[str], list[str]]:
    """(uncovered, varied, skipped) for each declared argument: ``uncovered`` names
    each argument whose second value changed the outputs but not the fingerprint."""
    images, texts, contexts = probes
    base_fp = backend.fingerprint()
    base_caps, base_out = _outputs(backend, images, texts, contexts)
    uncovered, varied, skipped = [], [], []
    for arg in declared:
        current = args.get(arg.name, arg.default)
        value, why = alternative(arg, current)
        if value is _NONE:
            skipped.append(f"{arg.name} ({why})")
            continue
        label = f"{arg.name}={value!r}"
        try:
            other = build_with(**{arg.name: value})
            fp = other.fingerprint()
            caps, out = _outputs(other, images, texts, contexts)
        except Exception as exc:   # a value this setup cannot build is not the backend's fault
            skipped.append(f"{arg.name} (building with {label} failed: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:120] if str(exc) else ''})")
            continue
        finally:
            other = None
            gc.collect()
        changed = caps != base_caps or _differ(base_out, out, floor)
        if changed and fp == base_fp:
            uncovered.append(label)
        varied.append(f"{label}: " + ("fingerprint follows" if fp != base_fp
                                      else "same outputs, same fingerprint"))
    return uncovered, varied, skipped
