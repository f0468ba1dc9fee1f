"""The aesthetics protocol: defaults, the option check, metric names vs what the evaluator emits,
and a light hooks module."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctxbench.encoder import CachedEncoder
from ctxbench.errors import ProtocolError, TaskConfigError
from ctxbench.families.aesthetics import evaluator, synthetic as syn
from ctxbench.families.aesthetics.protocol import (PROTOCOL_DEFAULTS, check_protocol, metric_names,
                                                   quality_metric_names, sweep_metric_names)
from ctxbench.families.contract import Dependency, EvalRequest
from ctxbench.task_config import parse_task

TASKS = Path(__file__).resolve().parents[3] / "tasks" / "aesthetics"
FAST = {"n_resamples": 50, "epochs": 5}


def _merged(**over):
    return {**PROTOCOL_DEFAULTS, **over}


def test_defaults_pass():
    check_protocol(dict(PROTOCOL_DEFAULTS))
    check_protocol(_merged(lr="1e-4", weight_decay=[0.0, "1e-5"], hidden=[64, 128]))  # YAML 1.1 floats


@pytest.mark.parametrize("option, value", [
    ("probes", ["nima"]), ("probes", []), ("scorer_probes", ["zero_shot"]), ("loss", "l1"),
    ("select_metric", "accuracy"), ("scorer", "probes"), ("param_direction", 2),
    ("param_direction", True), ("val_fraction", 1.0), ("test_fraction", "half"),
    ("mse_weight", -1), ("tie_margin", "wide"), ("emd_r", 0), ("dropout", 1.0), ("lr", 0),
    ("lr", []), ("weight_decay", -0.1), ("hidden", 0), ("hidden", [64, 1.5]), ("attn_dim", 10),
    ("attn_heads", 0), ("epochs", 0), ("epochs", 2.5), ("batch_size", True), ("patience", -1),
    ("hist_bins", 0), ("n_resamples", "1000"), ("min_tag_test", -1), ("distribution_head", "yes"),
    ("logistic_fit", 1), ("tag_template", 3), ("tag_template", "{tag} {x}"), ("no_tag_text", None),
    ("hist_range", [10.5, 0.5]), ("hist_range", [1]), ("kl_epsilon", -1e-4),
    ("zero_shot_prompts", {"positive": ["nice"]}), ("zero_shot_prompts", {"positive": [], "negative": ["x"]}),
])
def test_every_option_is_checked(option, value):
    with pytest.raises(ProtocolError) as info:
        check_protocol(_merged(**{option: value}))
    assert info.value.option == option
    assert str(info.value).startswith(f"protocol.{option}:")


def test_validate_names_the_option_and_refuses_scorer_task(tmp_path):
    from ctxbench.plugin_host import load_plugins
    host = load_plugins(entry_points=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: bad\nfamily: aesthetics\nversion: 1\ndataset: {loader: synthetic_aesthetics}\n"
                   "protocol:\n  n_resamples: 10\n  scorer: probes\n")
    with pytest.raises(TaskConfigError, match=r"protocol\.scorer \(line 7\)'.*'probes' is not allowed"):
        parse_task(bad, host.families, host.loaders)
    old = tmp_path / "old.yaml"        # the dependency is declared with depends_on now
    old.write_text("task: old\nfamily: aesthetics\nversion: 1\n"
                   "dataset: {loader: synthetic_degradation_sweep}\nprotocol: {scorer_task: ava}\n")
    with pytest.raises(TaskConfigError, match="scorer_task"):
        parse_task(old, host.families, host.loaders)


def test_metric_names_follow_the_protocol():
    names = set(metric_names(dict(PROTOCOL_DEFAULTS)))
    assert {"tag_aware/SRCC", "image_only/Error", "image_only/Error_var", "tag_aware/Error_std",
            "zero_shot/KL", "gain/SRCC", "tag_aware/rho",
            "zero_shot/agreement"} <= names
    assert not any("*" in n for n in names)
    assert "tag_aware/NIMA_EMD" not in names and "tag_aware/LCC_logistic" not in names
    more = set(metric_names(_merged(distribution_head=True, logistic_fit=True)))
    assert {"tag_aware/NIMA_EMD", "gain/NIMA_EMD", "image_only/LCC_logistic"} <= more
    assert "zero_shot/NIMA_EMD" not in more
    alone = set(quality_metric_names(_merged(probes=["image_only"])))
    assert not any(n.startswith(("gain/", "tag_aware/")) for n in alone)
    assert sweep_metric_names(_merged(scorer="zero_shot")) == ["zero_shot/rho", "zero_shot/agreement"]


def _random_encoder(dim=16):
    from ctxbench_plugins.random_backend import RandomBackend
    return CachedEncoder(RandomBackend(dim=dim), cache=None, progress=False)


@pytest.mark.parametrize("protocol", [
    {}, {"distribution_head": True, "logistic_fit": True}, {"probes": ["tag_aware", "zero_shot"]},
])
def test_emitted_quality_metrics_equal_metric_names(protocol):
    task = parse_task(TASKS / "aesthetics_synthetic.yaml")
    data = syn.build_quality(n_images=120, seed=0)
    req = EvalRequest(task, data, _random_encoder(), {**task.protocol, **FAST, **protocol}, 0)
    out = evaluator.evaluate(req)
    assert set(out.metrics) == set(quality_metric_names(req.protocol))
    assert set(out.metrics) <= set(metric_names(req.protocol))
    assert set(out.headline) <= set(out.metrics)


def test_emitted_sweep_metrics_equal_metric_names():
    task = parse_task(TASKS / "aesthetics_degradation_sweep.yaml")
    scorer = parse_task(TASKS / "aesthetics_synthetic.yaml")
    sweep = syn.build_sweep(n_prompts=2, scenes_per_prompt=2, seed=0)
    dep = Dependency(scorer, syn.build_quality(n_images=60, seed=0),
                     {**PROTOCOL_DEFAULTS, **scorer.protocol, **FAST})
    req = EvalRequest(task, sweep, _random_encoder(), {**task.protocol, **FAST}, 0,
                      dependencies={"scorer": dep})
    out = evaluator.evaluate(req)
    assert set(out.metrics) == set(sweep_metric_names(req.protocol))
    assert set(out.metrics) <= set(metric_names(req.protocol))


# (the light-import check of this family's hooks is in tests/core/test_family_contract.py)


def test_registered_metrics_say_which_way_is_better():
    from ctxbench.families.aesthetics import ctxbench_metrics
    specs = {m.name: m for m in ctxbench_metrics()}
    for name in ("quality.error", "quality.error_var", "quality.error_std", "quality.hist_kl",
                 "quality.hist_emd", "quality.nima_emd"):
        assert specs[name].higher_is_better is False
    kl = specs["quality.hist_kl"].description
    assert "KL(P_true || P_pred)" in kl and "1e-4" in kl and "eps" in kl
    assert "variance" in specs["quality.error_var"].description
    import numpy as np
    assert specs["quality.error_var"].fn([1.0, 2.0], [1.5, 1.0]) == np.var([0.5, 1.0])
    for name in ("quality.lcc", "quality.srcc", "quality.lcc_logistic"):
        assert specs[name].higher_is_better is True


def test_plots_hook_survives_the_plots_module_import():
    import ctxbench.families.aesthetics as family
    import ctxbench.families.aesthetics.plots  # noqa: F401  (binds the submodule on the package)
    spec = family.ctxbench_families()[0]
    assert callable(spec.plots) and all(callable(f) for f in spec.plots())
