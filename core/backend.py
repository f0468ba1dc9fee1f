"""The backend contract: what a model plugin must provide.

A backend is any object satisfying the :class:`Backend` Protocol (structural
typing, as MTEB's model protocols: no base class to inherit). A plugin exposes a
:class:`BackendSpec` whose ``factory`` builds the backend from keyword arguments
(``--backend-arg key=value`` on the command line) and a device string.

Contract, checked by the runner for every batch (see encoder.py):
- ``encode_images(images, contexts)`` takes a list of RGB ``PIL.Image`` and a list
  of the same length of ``str | None`` contexts; returns a float tensor ``[N, D]``.
- ``encode_texts(texts, contexts)`` likewise for strings.
- a context other than ``None`` is only ever passed on a side the backend
  declares in :class:`Capabilities`.
- ``encode_videos(clips, contexts)`` (optional, only if ``capabilities.video``):
  each clip is a list of frames; returns ``[N, D]``.
- ``fingerprint()`` identifies the exact weights, precision and plugin version;
  it keys the embedding cache and is written into every result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # type hints only: `ctxbench list`/`validate` import this module
    import torch
    from PIL import Image


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do beyond plain image and text embedding."""

    image_context: bool = False   # phi(I, C): the image embedding can take a context
    text_context: bool = False    # psi(q, C): the text embedding can take a context
    video: bool = False           # has encode_videos (a real video encoder)
    normalized: bool = False      # outputs are already L2-normalised
    context_method: str = "none"  # how context enters, e.g. "prompt", "late_fusion"


@runtime_checkable
class Backend(Protocol):
    """Structural type of a backend (see module docstring for the contract)."""

    capabilities: Capabilities

    def fingerprint(self) -> str: ...

    def encode_images(self, images: Sequence[Image.Image],
                      contexts: Sequence[str | None]) -> torch.Tensor: ...

    def encode_texts(self, texts: Sequence[str],
                     contexts: Sequence[str | None]) -> torch.Tensor: ...


NO_VARIANT = object()   # BackendArg.variant when the kit picks the alternative itself


@dataclass(frozen=True)
class BackendArg:
    """One keyword argument of a backend factory (``--backend-arg name=value``).

    ``type`` is a Python type or a tuple of accepted types; a value is checked
    against it before any model loads (an int is accepted for a float; ``None``
    when the default is ``None``). ``choices`` lists every accepted value where
    the set is closed. ``variant`` is a second valid value the conformance kit
    builds the backend with to check that the fingerprint follows the argument
    (``fingerprint_covers_args``); without one the kit flips a bool, takes
    another choice, or moves a number, and skips the rest (paths, model ids,
    free text). ``vary=False`` tells the kit not to try (e.g. a cache folder).
    """

    name: str
    type: type | tuple[type, ...]
    default: Any = None
    help: str = ""
    choices: tuple = ()
    variant: Any = NO_VARIANT
    vary: bool = True

    def type_name(self) -> str:
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        return " | ".join(getattr(k, "__name__", str(k)) for k in kinds)

    def accepts(self, value: Any) -> tuple[bool, Any]:
        """(ok, value as the factory gets it): int -> float for float args."""
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        if value is None and (self.default is None or type(None) in kinds):
            return True, value
        if isinstance(value, bool) and bool not in kinds:
            return False, value   # bool is an int subclass: true is not a number here
        if isinstance(value, kinds):
            return True, value
        if float in kinds and isinstance(value, int):
            return True, float(value)
        return False, value


@dataclass(frozen=True)
class BackendSpec:
    """How a plugin registers a backend.

    ``factory(device: str, **args) -> Backend``. ``args`` come from
    ``--backend-arg key=value`` (values parsed as YAML scalars).
    ``default_batch_size`` is used unless ``--batch-size`` is given.
    ``args`` declares every keyword argument the factory accepts (name, type,
    default, help): the CLI refuses unknown names and wrong types before loading
    anything, and ``ctxbench list backends --details NAME`` shows them. A spec
    that declares none (``args=()``, older or third-party plugins) is not
    checked; the conformance kit says so. ``embedded_families`` keeps a default
    backend to the families it is there to show (toy_ctx: where a context is an
    input; on the other tasks it measures toy_clip's towers again).
    """

    name: str
    factory: Callable[..., Backend]
    description: str = ""
    default_batch_size: int = 32
    default_args: dict[str, Any] = field(default_factory=dict)
    embedded_default: bool = False  # run by `ctxbench run` when no --backend is given
    args: tuple[BackendArg, ...] = ()
    #: with ``embedded_default``: the families whose tasks the default run gives this
    #: backend (empty: every family); ``--backend NAME`` runs it on any task
    embedded_families: tuple[str, ...] = ()


def default_run_scope(spec: BackendSpec) -> str:
    """The sentence the run log and ``ctxbench list backends`` give a default backend
    kept to ``embedded_families``."""
    return (f"{spec.name}: embedded default on {', '.join(spec.embedded_families)} only "
            f"(--backend {spec.name} runs it on every task)")


def check_backend_args(spec: BackendSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    """``args`` checked against ``spec.args`` (names, types, choices), as the factory
    will get them; raises :class:`~ctxbench.errors.CtxbenchError` naming the argument
    with did-you-mean. Undeclared specs (``args=()``) pass unchanged."""
    from .errors import CtxbenchError
    from .name_registry import close_matches

    if not spec.args:
        return dict(args)
    declared = {a.name: a for a in spec.args}
    out: dict[str, Any] = {}
    for key, value in args.items():
        arg = declared.get(key)
        if arg is None:
            near = close_matches(key, list(declared))
            hint = f" Did you mean {' or '.join(near)}?" if near else ""
            raise CtxbenchError(
                f"backend {spec.name!r} has no argument {key!r}.{hint} Its arguments: "
                f"{', '.join(declared)} (ctxbench list backends --details {spec.name}); "
                f"an argument for one backend only is written --backend-arg BACKEND:{key}=VALUE")
        ok, value = arg.accepts(value)
        if not ok:
            quote = " (quote it to pass text: key='123')" if str in (
                arg.type if isinstance(arg.type, tuple) else (arg.type,)) else ""
            raise CtxbenchError(f"backend {spec.name!r}: argument {key}={value!r} is "
                                f"{type(value).__name__}, expected {arg.type_name()}{quote}")
        if arg.choices and value is not None and str(value).lower() not in {
                str(c).lower() for c in arg.choices}:
            near = close_matches(str(value), [str(c) for c in arg.choices])
            hint = f" Did you mean {' or '.join(near)}?" if near else ""
            raise CtxbenchError(f"backend {spec.name!r}: argument {key}={value!r} is not one of "
                                f"{', '.join(map(str, arg.choices))}.{hint}")
        out[key] = value
    return out


def lookup_backend(host, name: str) -> BackendSpec:
    """The spec registered as ``name`` in a PluginHost; when there is none and a plugin
    failed to load, the error says which, why and where (file:line), since it may be
    the one providing the backend, instead of only "unknown backend"."""
    from .errors import CtxbenchError, UnknownNameError
    from .name_registry import close_matches
    try:
        return host.backends.get(name)
    except UnknownNameError as exc:
        if not host.failures:
            raise
        near = set(close_matches(name, [f.plugin for f in host.failures]))
        failed = sorted(host.failures, key=lambda f: f.plugin not in near)
        lines = "; ".join(f"plugin {f.plugin} ({f.source}) failed to load: {f.error}" for f in failed)
        raise CtxbenchError(f"{exc} It may come from a plugin that failed to load: {lines}. "
                            "Fix that plugin (ctxbench list backends shows every failure).") from None


def describe_backend(spec: BackendSpec, origin: str, provenance: str) -> str:
    """``ctxbench list backends --details NAME``: description, plugin and the table of
    declared arguments (name, type, default - the preset's where it sets one - help)."""
    from tabulate import tabulate

    def short(text: str, width: int = 40) -> str:
        return text if len(text) <= width else text[:width - 1] + "…"
    in_default = ("no" if not spec.embedded_default else
                  f"on {', '.join(spec.embedded_families)} tasks only" if spec.embedded_families
                  else "yes")
    lines = [f"backend: {spec.name}", f"plugin: {origin} ({provenance})",
             f"default batch size: {spec.default_batch_size}",
             f"in the default run (ctxbench run without --backend): {in_default}", "",
             spec.description, ""]
    if not spec.args:
        lines.append("This backend does not declare its arguments (BackendSpec.args): see its "
                     "plugin's documentation; ctxbench cannot check --backend-arg for it.")
        return "\n".join(lines)
    rows = []
    for a in spec.args:
        note = (f" (choices: {', '.join(map(str, a.choices))})"
                if a.choices and len(a.choices) <= 6 else "")
        rows.append([a.name, a.type_name(), short(repr(spec.default_args.get(a.name, a.default))),
                     a.help + note])
    lines.append(tabulate(rows, ["argument", "type", "default", "help"], tablefmt="simple"))
    lines.append(f"\nexample: ctxbench check-backend {spec.name} --backend-arg "
                 f"{spec.args[0].name}=VALUE")
    return "\n".join(lines)
