"""Validators for a family's protocol options, with one message style.

Each ``require_*(p, option, ...)`` reads ``p[option]`` from the merged protocol,
raises :class:`~ctxbench.errors.ProtocolError` naming the option, the value found
and what is allowed, and otherwise returns the value (numbers as float, lists as
list). ``bool`` is never an int or a number here (YAML ``yes``/``true`` is not 1).

A family's ``check_protocol`` calls these for the ordinary options and keeps its
special checks (pairs, templates, crop scales ...) to itself::

    require_int(p, "epochs", low=1)
    require_number(p, "dropout", low=0, high=1, open_high=True)
    require_choice(p, "loss", ("paper", "mse"))
    require_names(p, "probes", PROBES)
    require_list_of(p, "lr", partial(require_number, low=0, open_low=True), scalar_ok=True)

Standard library only: ``ctxbench list`` / ``validate`` import it without torch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from .errors import ProtocolError

__all__ = ["require_bool", "require_int", "require_number", "require_choice", "require_names",
           "require_text", "require_list_of", "is_int", "is_number", "as_list"]


def as_list(value: Any) -> list:
    """``value`` as a list: a list/tuple is copied, anything else becomes ``[value]``."""
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any, numeric_strings: bool = False) -> bool:
    """An int or float that is not a bool; with ``numeric_strings`` also a string that
    ``float()`` reads (PyYAML, YAML 1.1, loads ``1e-4`` without a dot as a string)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    if numeric_strings and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def _listing(allowed: Iterable) -> str:
    return ", ".join(str(a) for a in allowed)


def _range(low, high, open_low: bool = False, open_high: bool = False) -> str:
    """``> 0``, ``>= 1``, ``<= 5``, ``in (0, 1]`` ..."""
    if low is not None and high is not None:
        return f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    if low is not None:
        return f"{'>' if open_low else '>='} {low}"
    if high is not None:
        return f"{'<' if open_high else '<='} {high}"
    return ""


def require_bool(p: Mapping, option: str, fix: str | None = None) -> bool:
    """``true`` or ``false`` (not 0/1, not ``"yes"``)."""
    value = p[option]
    if not isinstance(value, bool):
        raise ProtocolError(option, f"expected true or false, got {value!r}", fix)
    return value


def require_int(p: Mapping, option: str, low: int | None = None, high: int | None = None,
                fix: str | None = None) -> int:
    """An integer (not a bool, not ``2.0``) in ``[low, high]`` (either bound optional)."""
    value = p[option]
    bounds = _range(low, high)
    if not is_int(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ProtocolError(option, f"expected an integer{' ' + bounds if bounds else ''}, "
                            f"got {value!r}", fix)
    return value


def require_number(p: Mapping, option: str, low: float | None = None, high: float | None = None,
                   open_low: bool = False, open_high: bool = False,
                   numeric_strings: bool = False, fix: str | None = None) -> float:
    """A number (not a bool) between ``low`` and ``high``, each bound closed unless
    ``open_low``/``open_high``; returned as float. ``numeric_strings``: also accept a
    string float() reads (see :func:`is_number`)."""
    value = p[option]
    bounds = _range(low, high, open_low, open_high)
    problem = f"expected a number{' ' + bounds if bounds else ''}, got {value!r}"
    if not is_number(value, numeric_strings):
        raise ProtocolError(option, problem, fix)
    v = float(value)
    if v != v or (low is not None and (v < low or (open_low and v == low))) or \
            (high is not None and (v > high or (open_high and v == high))):
        raise ProtocolError(option, problem, fix)
    return v


def require_choice(p: Mapping, option: str, allowed: Iterable, fix: str | None = None) -> Any:
    """One of ``allowed`` (a bool only where ``allowed`` lists one: ``True == 1``)."""
    allowed = tuple(allowed)
    value = p[option]
    bool_ok = any(isinstance(a, bool) for a in allowed)
    try:
        ok = value in allowed and (bool_ok or not isinstance(value, bool))
    except TypeError:           # an unhashable/uncomparable value
        ok = False
    if not ok:
        raise ProtocolError(option, f"{value!r} is not allowed", fix or f"allowed: {_listing(allowed)}")
    return value


def require_names(p: Mapping, option: str, allowed: Iterable[str], empty_ok: bool = False,
                  scalar_ok: bool = False, fix: str | None = None) -> list[str]:
    """A list of names from ``allowed``, each at most once; non-empty unless
    ``empty_ok``; a single name stands for a one-item list when ``scalar_ok``."""
    allowed = tuple(allowed)
    value = p[option]
    if scalar_ok and isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or (not value and not empty_ok):
        raise ProtocolError(option, f"expected a {'' if empty_ok else 'non-empty '}list of names, "
                            f"got {value!r}", fix or f"names from: {_listing(allowed)}")
    bad = [x for x in value if not isinstance(x, str) or x not in allowed]
    if bad:
        raise ProtocolError(option, f"unknown value{'s' if len(bad) > 1 else ''} "
                            f"{', '.join(repr(x) for x in bad)} in {list(value)!r}", fix or f"allowed: {_listing(allowed)}")
    repeated = [x for i, x in enumerate(value) if x in value[:i]]
    if repeated:
        raise ProtocolError(option, f"repeated value {repeated[0]!r} in {list(value)}",
                            "list each one once")
    return list(value)


def require_text(p: Mapping, option: str, placeholder: str | None = None,
                 fix: str | None = None) -> str:
    """A string; with ``placeholder`` (e.g. ``"{}"``) it must contain that text."""
    value = p[option]
    if not isinstance(value, str):
        raise ProtocolError(option, f"expected a text, got {value!r}", fix)
    if placeholder is not None and placeholder not in value:
        raise ProtocolError(option, f"{value!r} has no {placeholder!r}",
                            fix or f"put {placeholder!r} where the value goes")
    return value


def require_list_of(p: Mapping, option: str, check: Callable[[Mapping, str], Any],
                    what: str | None = None, empty_ok: bool = False, scalar_ok: bool = False,
                    unique: bool = False, fix: str | None = None) -> list:
    """A list each item of which passes ``check(q, option)`` (any ``require_*`` above,
    e.g. ``functools.partial(require_number, low=0)``, run on ``q = {option: item}``);
    non-empty unless ``empty_ok``; a non-list stands for a one-item list when
    ``scalar_ok`` (a validation grid); no item twice when ``unique``. ``what`` names
    the items in messages (``"integers >= 1"``). Returns the checked items."""
    value = p[option]
    kind = f"{'' if empty_ok else 'non-empty '}list{' of ' + what if what else ''}"
    if scalar_ok and not isinstance(value, (list, tuple)):
        value = [value]
    if not isinstance(value, (list, tuple)) or (not value and not empty_ok):
        raise ProtocolError(option, f"expected a {kind}, got {value!r}", fix)
    items = []
    for i, item in enumerate(value):
        try:
            items.append(check({option: item}, option))
        except ProtocolError as exc:
            problem = (f"expected a {kind}, got {list(value)!r}: item {i} is {item!r}" if what
                       else f"item {i} of {list(value)!r}: {exc.problem}")
            raise ProtocolError(option, problem, fix or exc.fix) from None
    if unique:
        repeated = [x for i, x in enumerate(value) if x in value[:i]]
        if repeated:
            raise ProtocolError(option, f"repeated value {repeated[0]!r} in {list(value)}",
                                "list each one once")
    return items


def check_dataset_options(options: Mapping, allowed: Mapping[str, str], types: Mapping[str, tuple],
                          where: str) -> dict:
    """A loader's ``dataset.options``: unknown names refused, and each option named in
    ``types`` (``name -> ("int" | "number", low, high)``, inclusive bounds, None =
    open) checked and converted by :func:`require_int` / :func:`require_number`.
    Raises :class:`~ctxbench.errors.DatasetOptionError` naming ``where`` (the task file
    and ``dataset.options``), the option, the problem and its description in
    ``allowed``."""
    from .errors import DatasetOptionError
    unknown = set(options) - set(allowed)
    if unknown:
        raise DatasetOptionError(f"{where}: unknown option(s) {sorted(unknown)}; allowed: "
                                 f"{', '.join(allowed)}")
    out = dict(options)
    for key, (kind, low, high) in types.items():
        if key not in out:
            continue
        try:
            out[key] = (require_int(out, key, low, high) if kind == "int" else
                        require_number(out, key, low, high, numeric_strings=True))
        except ProtocolError as exc:
            raise DatasetOptionError(f"{where}.{key}: {exc.problem} ({allowed[key]})") from None
    return out
