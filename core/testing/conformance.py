"""Backend conformance kit: does a backend keep the contract of ctxbench.backend?

:func:`run_conformance` builds a backend from its :class:`~ctxbench.backend.BackendSpec`
(or a factory, or takes a built backend) and runs every check below on a few
images and texts of the synthetic world; it returns a :class:`ConformanceReport`
whose :meth:`~ConformanceReport.summary` prints one line per check and a speed
report. ``ctxbench check-backend NAME --backend-arg k=v`` and the pytest plugin
(:mod:`ctxbench.testing.pytest_plugin`) both run it.

Checks:

- ``build``: the factory returns a backend; ``protocol``: it has ``capabilities``
  (a Capabilities), ``fingerprint``, ``encode_images``, ``encode_texts`` (and
  ``encode_videos`` when it declares video);
- ``fingerprint``: a non-empty single-line string, stable across calls and across a
  second build with the same arguments;
- ``image_output`` / ``text_output``: a floating tensor [N, D], finite, the same D on
  both sides (retrieval compares them by cosine);
- ``normalized``: unit L2 norms when ``capabilities.normalized``;
- ``determinism``: the same inputs twice give the same numbers;
- ``batch_invariance``: one batch = one item at a time = two halves;
- ``image_context`` / ``text_context``: a declared context really changes the
  embedding (two contexts differ from each other and from no context, by more
  than 4x the numerical noise seen in the determinism/batch checks), and mixed
  batches still equal single items;
- ``video``: ``encode_videos`` gives [N, D] when declared;
- ``cached_encoder``: through :class:`~ctxbench.encoder.CachedEncoder` the results
  equal the direct calls (duplicates served once);
- ``fingerprint_covers_args``: each declared argument (``BackendSpec.args``) varied
  to a second value changes the fingerprint whenever it changes the outputs (see
  :mod:`ctxbench.testing.arg_coverage`); a backend that declares none gets a
  warning (skip);
- ``speed``: items per second for images and texts (informational).

Tolerance: ``atol`` (default 1e-4; 2e-2 when the backend's ``dtype`` attribute is
bf16/fp16, whose batched kernels legitimately differ by more).
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from PIL import Image

from ..backend import BackendSpec, Capabilities
from .probes import CheckFailed, _check_matrix, _default_atol, _maxdiff, probe_inputs

CHECKS = ("build", "protocol", "fingerprint", "image_output", "text_output", "normalized",
          "determinism", "batch_invariance", "image_context", "text_context", "video",
          "cached_encoder", "fingerprint_covers_args", "speed")
PASS, FAIL, SKIP = "pass", "fail", "skip"


class CheckSkipped(Exception):
    pass


@dataclass
class CheckResult:
    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


@dataclass
class ConformanceReport:
    backend: str
    args: dict
    device: str
    checks: list[CheckResult] = field(default_factory=list)
    fingerprint: str = ""
    capabilities: dict = field(default_factory=dict)
    dim: int | None = None
    speed: dict = field(default_factory=dict)
    reproduce: str = ""   # a command that runs these checks again (see reproduce.py)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def result(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status == FAIL]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        head = self.reproduce or f"conformance of {self.backend}"
        lines = [head, f"  device: {self.device}", f"  fingerprint: {self.fingerprint or '-'}",
                 f"  capabilities: {self.capabilities or '-'}", f"  dimension: {self.dim or '-'}"]
        width = max(len(c) for c in CHECKS)
        for c in self.checks:
            mark = {PASS: "PASS", FAIL: "FAIL", SKIP: "skip"}[c.status]
            lines.append(f"  {mark}  {c.name:<{width}}  {c.detail}".rstrip())
        if "images_per_s" in self.speed:
            lines.append(f"  speed: {self.speed['images_per_s']:.1f} images/s, "
                         f"{self.speed['texts_per_s']:.1f} texts/s through CachedEncoder at batch "
                         f"{self.speed['batch_size']}; load {self.speed.get('load_seconds', 0):.2f} s")
        n_fail = len(self.failures())
        lines.append(f"  result: {'OK' if self.ok else f'{n_fail} check(s) failed'}")
        return "\n".join(lines)


class _Runner:
    def __init__(self, build: Callable[..., Any], report: ConformanceReport, atol: float | None,
                 batch_size: int, n: int, rebuild: bool, declared: tuple | None = None,
                 variable: bool = True):
        self.build, self.report, self.atol = build, report, atol
        self.declared, self.variable = declared, variable
        self.merged: dict = {}   # the arguments the backend was built with
        self.batch_size, self.n, self.rebuild = batch_size, n, rebuild
        self.images, self.texts, self.contexts = probe_inputs(n)
        self.backend: Any = None
        self.dim: int | None = None
        self.noise = 0.0   # largest numerical difference seen between equivalent calls

    def run(self) -> ConformanceReport:
        for name in CHECKS:
            t0 = time.perf_counter()
            if self.backend is None and name != "build":
                result = CheckResult(name, SKIP, "backend could not be built")
            else:
                try:
                    detail = getattr(self, f"check_{name}")() or ""
                    result = CheckResult(name, PASS, detail)
                except CheckSkipped as exc:
                    result = CheckResult(name, SKIP, str(exc))
                except CheckFailed as exc:
                    result = CheckResult(name, FAIL, str(exc))
                except Exception as exc:   # a crash is a failure of that check
                    tail = traceback.format_exc(limit=-2).strip().splitlines()
                    where = tail[-3].strip() if len(tail) >= 3 else ""
                    result = CheckResult(name, FAIL, f"raised {type(exc).__name__}: {exc} ({where})")
            result.seconds = time.perf_counter() - t0
            self.report.checks.append(result)
        return self.report

    # -- checks ---------------------------------------------------------------------
    def check_build(self):
        t0 = time.perf_counter()
        self.backend = self.build()
        if self.backend is None:
            raise CheckFailed("the factory returned None")
        if self.atol is None:
            self.atol = _default_atol(self.backend)
        self.report.speed["load_seconds"] = round(time.perf_counter() - t0, 3)
        return f"built {type(self.backend).__name__} in {time.perf_counter() - t0:.2f} s"

    def check_protocol(self):
        b = self.backend
        caps = getattr(b, "capabilities", None)
        if not isinstance(caps, Capabilities):
            raise CheckFailed(f"capabilities is {type(caps).__name__}, expected ctxbench.backend.Capabilities")
        self.report.capabilities = asdict(caps)
        missing = [m for m in ("fingerprint", "encode_images", "encode_texts")
                   if not callable(getattr(b, m, None))]
        if caps.video and not callable(getattr(b, "encode_videos", None)):
            missing.append("encode_videos (declared video=True)")
        if missing:
            raise CheckFailed(f"missing methods: {', '.join(missing)}")
        return f"{caps}"

    def check_fingerprint(self):
        fp = self.backend.fingerprint()
        if not isinstance(fp, str) or not fp.strip():
            raise CheckFailed(f"fingerprint() returned {fp!r}, expected a non-empty string")
        if "\n" in fp:
            raise CheckFailed("fingerprint() contains a newline")
        self.report.fingerprint = fp
        if self.backend.fingerprint() != fp:
            raise CheckFailed("fingerprint() changes between calls")
        if not self.rebuild:
            return "stable across calls (rebuild not checked)"
        again = self.build()
        if again.fingerprint() != fp:
            raise CheckFailed(f"a second build with the same arguments has another fingerprint: "
                              f"{again.fingerprint()!r} vs {fp!r}")
        del again
        return "stable across calls and rebuilds"

    def _images(self, images, contexts=None):
        contexts = contexts if contexts is not None else [None] * len(images)
        with torch.inference_mode():
            out = self.backend.encode_images(list(images), list(contexts))
        return _check_matrix(out, len(images), "encode_images")

    def _texts(self, texts, contexts=None):
        contexts = contexts if contexts is not None else [None] * len(texts)
        with torch.inference_mode():
            out = self.backend.encode_texts(list(texts), list(contexts))
        return _check_matrix(out, len(texts), "encode_texts")

    def check_image_output(self):
        out = self._images(self.images)
        self.dim = int(out.shape[1])
        self.report.dim = self.dim
        return f"[{len(self.images)}, {self.dim}] float, finite"

    def check_text_output(self):
        out = self._texts(self.texts)
        if self.dim is not None and out.shape[1] != self.dim:
            raise CheckFailed(f"text dimension {out.shape[1]} differs from image dimension {self.dim}")
        return f"[{len(self.texts)}, {out.shape[1]}] float, finite"

    def check_normalized(self):
        if not self.backend.capabilities.normalized:
            raise CheckSkipped("not declared (capabilities.normalized=False)")
        for side, out in (("image", self._images(self.images)), ("text", self._texts(self.texts))):
            dev = float((out.norm(dim=1) - 1).abs().max())
            if dev > 1e-3:
                raise CheckFailed(f"declared normalized, but {side} norms deviate from 1 by {dev:.2e}")
        return "unit norms on both sides"

    def check_determinism(self):
        for side, fn, items in (("image", self._images, self.images), ("text", self._texts, self.texts)):
            d = _maxdiff(fn(items), fn(items))
            self.noise = max(self.noise, d)
            if d > self.atol:
                raise CheckFailed(f"{side}: two runs on the same inputs differ by {d:.2e} (atol {self.atol:g})")
        return f"repeat runs agree (atol {self.atol:g})"

    def _invariance(self, fn, items, contexts, side: str) -> float:
        whole = fn(items, contexts)
        single = torch.cat([fn([x], [c]) for x, c in zip(items, contexts)])
        half = len(items) // 2
        halves = torch.cat([fn(items[:half], contexts[:half]), fn(items[half:], contexts[half:])])
        d = max(_maxdiff(whole, single), _maxdiff(whole, halves))
        self.noise = max(self.noise, d)
        if d > self.atol:
            raise CheckFailed(f"{side}: a batch of {len(items)} differs from one-at-a-time by {d:.2e} "
                              f"(atol {self.atol:g}); check padding, position ids and pooling")
        return d

    def check_batch_invariance(self):
        none = [None] * self.n
        d = max(self._invariance(self._images, self.images, none, "image"),
                self._invariance(self._texts, self.texts, none, "text"))
        return f"max difference {d:.1e}"

    def _context(self, side: str):
        declared = getattr(self.backend.capabilities, f"{side}_context")
        if not declared:
            raise CheckSkipped(f"not declared (capabilities.{side}_context=False)")
        fn, items = (self._images, self.images) if side == "image" else (self._texts, self.texts)
        a, b = self.contexts
        k = min(3, self.n)
        plain, with_a, with_b = fn(items[:k]), fn(items[:k], [a] * k), fn(items[:k], [b] * k)
        gap_none = float((plain - with_a).abs().max(dim=1).values.min())
        gap_ab = float((with_a - with_b).abs().max(dim=1).values.min())
        # a real context effect stands clear of the numerical noise measured on this backend
        low_precision = getattr(self.backend, "dtype", None) in (torch.bfloat16, torch.float16)
        floor = max(4 * self.noise, 1e-3 if low_precision else 1e-6)
        if gap_none <= floor:
            raise CheckFailed(f"declared {side}_context, but adding a context leaves some embedding "
                              f"unchanged (difference {gap_none:.1e})")
        if gap_ab <= floor:
            raise CheckFailed(f"declared {side}_context, but two different contexts give the same "
                              f"embedding (difference {gap_ab:.1e})")
        mixed = [None, a, b] * (self.n // 3 + 1)
        d = self._invariance(fn, items, mixed[:self.n], f"{side} (mixed contexts)")
        return (f"context changes the embedding (min gap {min(gap_none, gap_ab):.2e}); "
                f"mixed batch = single (diff {d:.1e})")

    def check_image_context(self):
        return self._context("image")

    def check_text_context(self):
        return self._context("text")

    def check_video(self):
        if not self.backend.capabilities.video:
            raise CheckSkipped("not declared (capabilities.video=False)")
        clips = [self.images[:3], self.images[1:4]]
        with torch.inference_mode():
            out = self.backend.encode_videos(clips, [None, None])
        out = _check_matrix(out, 2, "encode_videos")
        if self.dim is not None and out.shape[1] != self.dim:
            raise CheckFailed(f"video dimension {out.shape[1]} differs from image dimension {self.dim}")
        return f"[2, {out.shape[1]}]"

    def _encoder(self):
        from ..encoder import CachedEncoder
        return CachedEncoder(self.backend, cache=None, batch_size=self.batch_size, progress=False,
                             label="conformance")

    def check_cached_encoder(self):
        from ..inputs import ImageRef
        enc = self._encoder()
        refs = [ImageRef.from_pil(im) for im in self.images]
        got = enc.images(refs + refs[:2])
        direct = self._images(self.images)
        d = _maxdiff(got[: self.n], direct)
        if d > self.atol:
            raise CheckFailed(f"CachedEncoder.images differs from encode_images by {d:.2e}")
        if _maxdiff(got[self.n:], got[:2]) != 0.0:
            raise CheckFailed("a duplicate input got a different embedding")
        if enc.stats["items_encoded"] != self.n:
            raise CheckFailed(f"encoded {enc.stats['items_encoded']} items for {self.n} distinct inputs")
        dt = _maxdiff(enc.texts(self.texts), self._texts(self.texts))
        if dt > self.atol:
            raise CheckFailed(f"CachedEncoder.texts differs from encode_texts by {dt:.2e}")
        return f"matches direct calls (diff {max(d, dt):.1e}); duplicates encoded once"

    def check_fingerprint_covers_args(self):
        from .arg_coverage import covers
        if not self.declared:
            raise CheckSkipped("warning: the backend declares no arguments (BackendSpec.args), so "
                               "neither the CLI nor this check can verify them; declare them")
        if not self.variable:
            raise CheckSkipped("a built backend was given: arguments cannot be varied")
        floor = max(4 * self.noise, self.atol or 0.0)
        uncovered, varied, skipped = covers(self.backend, self.build, self.declared,
                                            self.merged,
                                            (self.images, self.texts, self.contexts), floor)
        if uncovered:
            raise CheckFailed(f"{', '.join(uncovered)} changes the embeddings but not the "
                              f"fingerprint: put every argument that changes outputs into "
                              f"fingerprint() (it is written into every result)")
        return ("; ".join(varied) or "nothing varied") + (
            f"; skipped: {', '.join(skipped)}" if skipped else "")

    def check_speed(self):
        from ..inputs import ImageRef
        reps = max(1, 16 // self.n)
        # shifted pixel values per repetition, so nothing is deduplicated or cached
        refs = [ImageRef.from_pil(Image.eval(im, lambda v, r=r: (v + 7 * r) % 256))
                for r in range(reps) for im in self.images]
        texts = [f"{t} ({r})" for r in range(reps) for t in self.texts]
        enc = self._encoder()
        t0 = time.perf_counter()
        enc.images(refs)
        t1 = time.perf_counter()
        enc.texts(texts)
        t2 = time.perf_counter()
        self.report.speed.update({"images_per_s": len(refs) / max(t1 - t0, 1e-9),
                                  "texts_per_s": len(texts) / max(t2 - t1, 1e-9),
                                  "batch_size": self.batch_size})
        return (f"{self.report.speed['images_per_s']:.1f} images/s, "
                f"{self.report.speed['texts_per_s']:.1f} texts/s at batch {self.batch_size}")


def run_conformance(target: BackendSpec | Callable[..., Any] | Any, args: dict | None = None,
                    device: str = "cpu", *, name: str | None = None, batch_size: int | None = None,
                    atol: float | None = None, n: int = 6, rebuild: bool = True,
                    declared_args: tuple | None = None,
                    vary_args: bool = True) -> ConformanceReport:
    """Run every check on a backend and return the report (never raises for a check).

    ``target``: a BackendSpec (built with ``factory(device=device, **{**default_args,
    **args})``; its ``args`` declarations drive ``fingerprint_covers_args``), a
    factory callable (``factory(device=device, **args)``; pass ``declared_args``
    to have its arguments varied), or an already built backend (then ``args`` must
    be empty and neither rebuild nor argument variation is checked).
    ``vary_args=False`` skips the variation (it builds the backend once per
    varied argument).
    """
    from .reproduce import reproduce_line
    args = dict(args or {})
    merged, variable = dict(args), bool(vary_args)
    if isinstance(target, BackendSpec):
        spec = target
        merged = {**spec.default_args, **args}
        factory = spec.factory
        name = name or spec.name
        batch_size = batch_size or spec.default_batch_size
        declared_args = spec.args if declared_args is None else declared_args
    elif callable(target) and (isinstance(target, type) or not hasattr(target, "encode_images")):
        factory = target
        name = name or getattr(target, "__name__", "backend")
    else:
        if args:
            raise ValueError("args cannot be applied to an already built backend")
        factory = lambda device, **over: target  # noqa: E731
        name = name or type(target).__name__
        rebuild = variable = False

    def build(**overrides):
        return factory(device=device, **{**merged, **overrides})

    report = ConformanceReport(backend=name, args=args, device=device,
                               reproduce=reproduce_line(target, name, args, device,
                                                        declared_args, variable))
    runner = _Runner(build, report, atol, int(batch_size or 4), max(3, int(n)), rebuild,
                     tuple(declared_args or ()), variable)
    runner.merged = merged
    return runner.run()
