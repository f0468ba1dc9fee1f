"""The shared protocol validators (ctxbench.protocol_checks) and lazy hooks (ctxbench.lazy)."""

from __future__ import annotations

import subprocess
import sys
from functools import partial

import pytest

from ctxbench.errors import ProtocolError
from ctxbench.lazy import lazy, lazy_value, resolve
from ctxbench.protocol_checks import (is_number, require_bool, require_choice, require_int,
                                      require_list_of, require_names, require_number, require_text)


def _raises(fn, value, *words, option="opt", **kw):
    with pytest.raises(ProtocolError) as info:
        fn({option: value}, option, **kw)
    err = info.value
    assert err.option == option and str(err).startswith(f"protocol.{option}: ")
    assert repr(value) in str(err), str(err)           # says what was found
    for w in words:
        assert w in str(err), (w, str(err))
    return err


def test_bool():
    assert require_bool({"x": False}, "x") is False
    for bad in (0, 1, "yes", None):
        _raises(require_bool, bad, "true or false")


def test_int_is_not_bool_nor_float():
    assert require_int({"x": 3}, "x", low=1) == 3
    assert require_int({"x": 0}, "x", low=0, high=0) == 0
    assert require_int({"x": -7}, "x") == -7
    for bad in (True, 2.0, "3", None):
        _raises(require_int, bad, "integer >= 1", low=1)
    _raises(require_int, 0, "integer >= 1", low=1)
    _raises(require_int, 11, "integer in [1, 10]", low=1, high=10)


def test_number_bounds_open_and_closed():
    assert require_number({"x": 0}, "x", low=0) == 0.0
    assert require_number({"x": 0.5}, "x", low=0, high=1, open_low=True, open_high=True) == 0.5
    _raises(require_number, 0, "number > 0", low=0, open_low=True)
    _raises(require_number, -0.1, "number >= 0", low=0)
    _raises(require_number, 1.0, "number in [0, 1)", low=0, high=1, open_high=True)
    _raises(require_number, 2, "number <= 1", high=1)
    _raises(require_number, float("nan"), "number", low=0)
    for bad in (True, "1e-4", None, [1]):
        _raises(require_number, bad, "number")
    assert require_number({"x": "1e-4"}, "x", low=0, numeric_strings=True) == 1e-4
    _raises(require_number, "big", "number", numeric_strings=True)
    assert is_number(3) and not is_number(False) and is_number("2", numeric_strings=True)


def test_choice_refuses_bool_for_one():
    assert require_choice({"x": "a"}, "x", ("a", "b")) == "a"
    assert require_choice({"x": -1}, "x", ("auto", 1, -1)) == -1
    _raises(require_choice, True, "is not allowed", "allowed: auto, 1, -1", allowed=("auto", 1, -1))
    _raises(require_choice, "c", "'c' is not allowed", "allowed: a, b", allowed=("a", "b"))
    _raises(require_choice, ["a"], "is not allowed", allowed=("a", "b"))
    _raises(require_choice, "c", "use a", allowed=("a", "b"), fix="use a")


def test_names():
    allowed = ("a", "b", "c")
    assert require_names({"x": ["b", "a"]}, "x", allowed) == ["b", "a"]
    assert require_names({"x": []}, "x", allowed, empty_ok=True) == []
    assert require_names({"x": "a"}, "x", allowed, scalar_ok=True) == ["a"]
    _raises(require_names, [], "non-empty list", "a, b, c", allowed=allowed)
    _raises(require_names, "a", "list", allowed=allowed)
    _raises(require_names, ["a", "z"], "unknown value 'z'", "allowed: a, b, c", allowed=allowed)
    _raises(require_names, ["a", "a"], "repeated value 'a'", allowed=allowed)
    _raises(require_names, [1], "unknown value 1", allowed=allowed)


def test_text():
    assert require_text({"x": "a {}"}, "x", placeholder="{}") == "a {}"
    _raises(require_text, 3, "expected a text")
    _raises(require_text, "no slot", "has no '{}'", placeholder="{}")


def test_list_of():
    positive = partial(require_int, low=1)
    assert require_list_of({"x": [1, 5]}, "x", positive) == [1, 5]
    assert require_list_of({"x": "1e-3"}, "x", partial(require_number, numeric_strings=True),
                           scalar_ok=True) == [1e-3]
    assert require_list_of({"x": []}, "x", positive, empty_ok=True) == []
    _raises(require_list_of, [], "non-empty list of integers >= 1", check=positive,
            what="integers >= 1")
    _raises(require_list_of, 3, "list", check=positive)
    err = _raises(require_list_of, [1, 0], "item 1", "integer >= 1", check=positive)
    assert err.fix is None
    _raises(require_list_of, [1, True], "list of integers >= 1", "item 1 is True", check=positive,
            what="integers >= 1", fix="e.g. [1, 5]")
    _raises(require_list_of, [1, 1], "repeated value 1", check=positive, unique=True)
    _raises(require_list_of, ["a"], "has no '{}'", check=partial(require_text, placeholder="{}"))


def test_lazy_imports_on_first_call_and_names_its_target():
    code = ("import sys; from ctxbench.lazy import lazy, lazy_value\n"
            "f = lazy('colorsys:rgb_to_hsv'); v = lazy_value('.decoder:JSONDecodeError', 'json')\n"
            "before = [m for m in ('colorsys', 'json.decoder') if m in sys.modules]\n"
            "assert f(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0) and v().__name__ == 'JSONDecodeError'\n"
            "print(before, f.__name__, f.target, v.__name__, v.target)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["[]", "rgb_to_hsv", "colorsys:rgb_to_hsv", "load_jsondecodeerror",
                                  "json.decoder:JSONDecodeError"]


def test_lazy_relative_targets_and_errors():
    f = lazy(".metrics:recall_at_k", "ctxbench.families.context_retrieval")
    assert f.__name__ == "recall_at_k" and "ctxbench.families.context_retrieval.metrics:recall_at_k" in f.__doc__
    assert f.__module__ == "ctxbench.families.context_retrieval"
    g = lazy_value(".plots:PLOTS", "ctxbench.families.context_retrieval", name="load_plots")
    assert g.__name__ == "load_plots" and g() is resolve("ctxbench.families.context_retrieval.plots:PLOTS")
    with pytest.raises(ValueError, match="package.module:attribute"):
        lazy("json.dumps")
    with pytest.raises(ValueError, match="relative"):
        lazy(".x:y")
    with pytest.raises(ModuleNotFoundError):
        lazy("ctxbench.no_such_module:f")()


@pytest.mark.parametrize("loader, options, field, problem", [
    ("ctxbench.families.image_text_retrieval.synthetic:load_from_options",
     {"captions_per_image": 4}, "captions_per_image", "in [1, 3]"),
    ("ctxbench.families.image_text_retrieval.synthetic:load_from_options",
     {"n_images": "many"}, "n_images", "expected an integer"),
    ("ctxbench.families.multi_instance_retrieval.synthetic:load_from_options",
     {"n_clips": 2.5}, "n_clips", "expected an integer"),
    ("ctxbench.families.multi_instance_retrieval.synthetic:load_from_options",
     {"max_objects": 0}, "max_objects", "expected an integer in [1,"),
    ("ctxbench.families.aesthetics.synthetic:load_quality",
     {"p_no_style_tag": -0.1}, "p_no_style_tag", "in [0, 1]"),
])
def test_synthetic_loaders_name_the_task_file_and_option(tmp_path, loader, options, field, problem):
    """Every synthetic loader reads its numbers through check_dataset_options: a bad
    value names the task file, dataset.options.<field> and what is allowed."""
    from ctxbench.errors import DatasetOptionError
    from ctxbench.registrations import LoadContext
    with pytest.raises(DatasetOptionError) as err:
        resolve(loader)(options, LoadContext("t", tmp_path / "t.yaml"))
    assert f"{tmp_path / 't.yaml'}: dataset.options.{field}: " in str(err.value)
    assert problem in str(err.value)


def test_check_dataset_options_converts_and_refuses_unknown_names():
    from ctxbench.errors import DatasetOptionError
    from ctxbench.protocol_checks import check_dataset_options
    allowed = {"n": "count", "p": "share"}
    types = {"n": ("int", 1, None), "p": ("number", 0, 1)}
    assert check_dataset_options({"n": 3, "p": "5e-1"}, allowed, types, "f.yaml") == {"n": 3, "p": 0.5}
    with pytest.raises(DatasetOptionError, match=r"f.yaml: unknown option\(s\) \['m'\]; allowed: n, p"):
        check_dataset_options({"m": 1}, allowed, types, "f.yaml")
    with pytest.raises(DatasetOptionError, match=r"f.yaml.n: expected an integer >= 1, got True \(count\)"):
        check_dataset_options({"n": True}, allowed, types, "f.yaml")
