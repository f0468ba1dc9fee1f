"""The aesthetics family: heads and loss, the embedded datasets, the evaluator (with an
oracle backend that knows the generator, and the random backend), sweeps and tasks."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ctxbench.backend import Capabilities
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import CtxbenchError, DataNotFound, TaskConfigError
from ctxbench.families.aesthetics import evaluator as fam
from ctxbench.families.aesthetics import features, probes
from ctxbench.families.aesthetics.protocol import PROTOCOL_DEFAULTS
from ctxbench.families.aesthetics.heads import (TagAwareHead, emd_loss, paper_loss, rank_pairs,
                                                ranking_loss)
from ctxbench.families.contract import Dependency, EvalRequest
from ctxbench.inputs import pil_key
from ctxbench.families.aesthetics import metrics as Q
from ctxbench.registrations import LoadContext
from ctxbench.families.aesthetics import synthetic as syn
from ctxbench import synthetic_world as world
from ctxbench.task_config import parse_task

TASKS = Path(__file__).resolve().parents[3] / "tasks" / "aesthetics"
FAST = {"n_resamples": 200, "epochs": 60}


class AestheticsOracle:
    """Knows every scene of the given datasets from its pixels: an image embeds as
    [one-hot background (8), one-hot style (4), intent slots (2, always 0: no pixel
    shows an intent), degradations u (4), 1, 0]; a tag text as the one-hot of its
    background/style/intent slot; "a beautiful photo" / "an ugly photo" point towards
    low / high degradation (so zero-shot scoring works)."""

    capabilities = Capabilities(normalized=False, context_method="oracle")
    names = list(world.BACKGROUNDS) + [world.STYLE_PHRASES[s] for s in world.STYLES] + list(syn.INTENTS)
    U, CONST, OTHER = len(names), len(names) + 4, len(names) + 5
    DIM = len(names) + 6

    def __init__(self, *datasets):
        self.features = {pil_key(ref.load()): self._vec(scene)
                         for ds in datasets for ref, scene in zip(ds.refs, ds.meta["scenes"])}

    @classmethod
    def _vec(cls, scene) -> np.ndarray:
        v = np.zeros(cls.DIM, np.float32)
        v[cls.names.index(scene.background)] = 1.0
        v[cls.names.index(world.STYLE_PHRASES[scene.style])] = 1.0
        v[cls.U:cls.U + 4] = [(1 - scene.contrast) / 0.7, scene.noise / 0.15, scene.blur / 2.5,
                              scene.offcentre / 0.8]
        v[cls.CONST] = 1.0
        return v

    def fingerprint(self) -> str:
        return "oracle-aesthetics"

    def encode_images(self, images, contexts):
        return torch.from_numpy(np.stack([self.features[pil_key(im)] for im in images]))

    def encode_texts(self, texts, contexts):
        out = np.zeros((len(texts), self.DIM), np.float32)
        for i, text in enumerate(texts):
            if text in self.names:
                out[i, self.names.index(text)] = 1.0
            elif text in ("a beautiful photo", "an ugly photo"):
                out[i, self.CONST] = 1.0
                out[i, self.U:self.U + 4] = -0.5 if text == "a beautiful photo" else 0.5
            else:
                out[i, self.OTHER] = 1.0
        return torch.from_numpy(out)


def _task(name: str):
    return parse_task(TASKS / f"{name}.yaml")


def _run(task, dataset, backend_or_encoder, protocol=None, seed=0, dependencies=None):
    enc = backend_or_encoder if isinstance(backend_or_encoder, CachedEncoder) else \
        CachedEncoder(backend_or_encoder, cache=None, progress=False)
    return fam.evaluate(EvalRequest(task, dataset, enc, dict(protocol or {}), seed,
                                    dependencies=dict(dependencies or {})))


def _scorer(name: str = "aesthetics_synthetic", dataset=None, **protocol) -> dict[str, Dependency]:
    """``req.dependencies`` as the runner builds it for ``depends_on: {scorer: name}``:
    the task, its dataset, its family defaults merged with its protocol."""
    task = _task(name)
    if dataset is None:
        dataset = syn.build_quality(**task.options)
    return {"scorer": Dependency(task, dataset, {**PROTOCOL_DEFAULTS, **task.protocol, **protocol})}


@pytest.fixture(scope="module")
def quality_data():
    return syn.build_quality(n_images=400, seed=0)


@pytest.fixture(scope="module")
def oracle_quality(quality_data):
    return _run(_task("aesthetics_synthetic"), quality_data, AestheticsOracle(quality_data), FAST)


# ----------------------------------------------------------------------------- heads / loss
def test_rank_pairs_same_tag_mos_then_similarity():
    mos = torch.tensor([6.0, 5.0, 6.02, 4.0, 7.0])
    tag = torch.tensor([1, 1, 1, 2, 0])
    sim = torch.tensor([0.1, 0.9, 0.5, 0.0, 0.3])
    above = rank_pairs(mos, tag, sim, tie_margin=0.05)
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[0, 1] = True        # 6.0 > 5.0 under tag 1
    expected[2, 1] = True        # 6.02 > 5.0
    expected[2, 0] = True        # near tie (|0.02| <= 0.05): higher similarity (0.5 > 0.1) wins
    assert torch.equal(above, expected)   # tag 2 alone, tag 0 (no tag) never paired


def test_ranking_and_paper_loss_hand_computed():
    pred = torch.tensor([1.0, 0.0, 3.0], requires_grad=True)
    above = torch.tensor([[False, True, False], [False, False, False], [True, True, False]])
    # pairs (0,1): d=1; (2,0): d=2; (2,1): d=3 -> mean softplus(-d)
    expected = np.mean([math.log1p(math.exp(-d)) for d in (1.0, 2.0, 3.0)])
    assert ranking_loss(pred, above).item() == pytest.approx(expected, rel=1e-6)
    assert ranking_loss(pred, torch.zeros(3, 3, dtype=torch.bool)).item() == 0.0
    mos, tag, sim = torch.tensor([5.0, 4.0, 6.0]), torch.tensor([1, 1, 1]), torch.zeros(3)
    total = paper_loss(pred, mos, tag, sim, tie_margin=0.05, mse_weight=0.5)
    mse = float(((pred.detach() - mos) ** 2).mean())
    assert total.item() == pytest.approx(expected + 0.5 * mse, rel=1e-6)
    assert paper_loss(pred, mos, tag, sim, 0.05, 0.5, ranking=False).item() == pytest.approx(mse)
    total.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


def test_emd_loss_matches_numpy_emd():
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    target = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(1)), -1)
    ours = emd_loss(logits, target).item()
    ref = Q.emd(torch.softmax(logits, -1).numpy(), target.numpy()).mean()
    assert ours == pytest.approx(float(ref), rel=1e-4)


def test_tag_aware_head_attends_over_image_and_tag():
    head = TagAwareHead(12, hidden=16, attn_dim=8, attn_heads=2, mos_mean=5.0, mos_std=0.5)
    head.eval()
    score, dist = head(torch.randn(3, 12), torch.randn(3, 12))
    assert score.shape == (3,) and dist is None
    torch.testing.assert_close(head.last_attention.sum(-1), torch.ones(3))


def test_image_tag_pairs():
    tags = np.array([[1, 2], [3, 0], [0, 0], [0, 4]])
    img, tag = features.image_tag_pairs(tags, np.array([0, 1, 2, 3]))
    assert list(zip(img.tolist(), tag.tolist())) == [(0, 1), (0, 2), (1, 3), (2, 0), (3, 4)]


# ----------------------------------------------------------------------------- synthetic data
def test_synthetic_quality_is_deterministic_and_structured(quality_data):
    again = syn.build_quality(n_images=400, seed=0)
    assert [r.key for r in again.refs] == [r.key for r in quality_data.refs]
    np.testing.assert_array_equal(again.votes, quality_data.votes)
    other = syn.build_quality(n_images=400, seed=1)
    assert other.refs[0].key != quality_data.refs[0].key
    # MOS follows the latent quality up to vote noise; AVA-like spread
    assert np.corrcoef(quality_data.mos, quality_data.meta["latent"])[0, 1] > 0.95
    assert 4.5 < quality_data.mos.mean() < 6.5 and 0.4 < quality_data.mos.std() < 1.2
    # tag 1 = background, tag 2 = the intent of a themed image, else style (or none)
    for scene, intent, (t1, t2) in zip(quality_data.meta["scenes"], quality_data.meta["intent"],
                                       quality_data.tags):
        assert quality_data.tag_names[t1] == scene.background
        if intent is not None:
            assert quality_data.tag_names[t2] == intent
        else:
            assert t2 == 0 or quality_data.tag_names[t2] == world.STYLE_PHRASES[scene.style]
    assert 0 < (quality_data.tags[:, 1] == 0).mean() < 0.25
    assert 0.2 < np.mean([i is not None for i in quality_data.meta["intent"]]) < 0.4
    # the quality knobs reach the pixels: a degraded scene differs from its clean self
    scene = quality_data.meta["scenes"][0]
    clean = world.Scene(scene.objects, scene.background, scene.texture, scene.lighting, scene.style)
    assert np.abs(np.asarray(world.render(clean), float) - np.asarray(world.render(scene), float)).mean() > 1


def test_synthetic_intent_is_in_the_tags_not_in_the_pixels():
    """The property that lets tags beat pixels: which degradation was wanted is drawn
    after the scenes, so the rendered images are the very same with or without
    intents; only the tag and the votes change."""
    plain = syn.build_quality(n_images=200, seed=3, p_intent=0.0)
    themed = syn.build_quality(n_images=200, seed=3, p_intent=0.5)
    assert [r.key for r in plain.refs] == [r.key for r in themed.refs]
    assert all(i is None for i in plain.meta["intent"])
    wanted = [i for i, name in enumerate(themed.meta["intent"]) if name is not None]
    assert 60 < len(wanted) < 140
    assert not np.array_equal(plain.votes[wanted], themed.votes[wanted])
    # an intended knob raises the latent quality, the same knob unintended lowers it
    u = np.zeros((2, 4))
    u[1, syn.INTENTS["soft focus"]] = 1.0
    for intents, sign in (([None, None], -1), (["soft focus"] * 2, 1)):
        mu = syn.latent_mos(u, ["photo", "photo"], ["meadow", "meadow"], intents)
        assert np.sign(mu[1] - mu[0]) == sign


@pytest.mark.parametrize("options, field, problem", [
    ({"p_intent": 1.5}, "p_intent", "in [0, 1]"),
    ({"p_intent": "often"}, "p_intent", "expected a number"),
    ({"n_images": 5}, "n_images", ">= 10"),
    ({"n_images": 600.5}, "n_images", "expected an integer"),
    ({"vote_std": 0}, "vote_std", ">= 1e-06"),
    ({"votes_min": True}, "votes_min", "expected an integer"),
])
def test_synthetic_quality_options_are_checked_by_name(tmp_path, options, field, problem):
    from ctxbench.errors import DatasetFormatError
    ctx = LoadContext("aesthetics_synthetic", tmp_path / "task.yaml")
    with pytest.raises(DatasetFormatError) as err:
        syn.load_quality(options, ctx)
    message = str(err.value)
    assert str(tmp_path / "task.yaml") in message and f"dataset.options.{field}" in message
    assert problem in message


def test_synthetic_sweep_options_are_checked_by_name(tmp_path):
    from ctxbench.errors import DatasetFormatError
    ctx = LoadContext("aesthetics_degradation_sweep", tmp_path / "task.yaml")
    with pytest.raises(DatasetFormatError, match=r"dataset\.options\.n_prompts: expected an integer in \[1, 8\]"):
        syn.load_sweep({"n_prompts": 9}, ctx)
    with pytest.raises(DatasetFormatError, match=r"dataset\.options\.levels: expected a list of numbers"):
        syn.load_sweep({"levels": "0, 1"}, ctx)
    with pytest.raises(DatasetFormatError, match="unknown option"):
        syn.load_sweep({"levles": [0, 1]}, ctx)
    assert len(syn.load_sweep({"levels": [0, "1e-1"], "n_prompts": 1, "scenes_per_prompt": 2}, ctx)) == 4


def test_synthetic_limit_keeps_tags_and_changes_n(quality_data):
    from ctxbench_plugins.random_backend import RandomBackend
    small = syn.build_quality(n_images=400, seed=0, limit=60)
    assert len(small) == 60 and small.meta["limit"]["kept"] == 60
    assert all((small.tags[:, 0] == t).sum() >= 5 for t in np.unique(quality_data.tags[:, 0]))
    raised = syn.build_quality(n_images=400, seed=0, limit=5)        # 8 backgrounds x 5
    assert len(raised) == 40 and raised.meta["limit"]["raised_to"] == 40
    same = syn.build_quality(n_images=400, seed=0, limit=10_000)
    assert same.ids == quality_data.ids and "raised_to" not in same.meta["limit"]
    task = _task("aesthetics_synthetic")
    proto = {"probes": ["image_only"], "n_resamples": 20, "epochs": 3}
    n_small = _run(task, raised, RandomBackend(dim=8), proto).n
    n_full = _run(task, quality_data, RandomBackend(dim=8), proto).n
    assert 3 <= n_small < n_full


def test_synthetic_sweep_limit():
    full = syn.build_sweep(seed=0)
    ds = syn.build_sweep(seed=0, limit=60)
    assert len(full) == 160 and len(ds) == 60
    assert len({(p, v) for p, v in zip(ds.prompt_ids, ds.params)}) == 20   # 4 prompts x 5 levels
    assert len(syn.build_sweep(seed=0, limit=3)) == 40                     # 2 per cell
    assert [r.key for r in syn.build_sweep(seed=0, limit=500).refs] == [r.key for r in full.refs]


def test_synthetic_sweep_structure():
    sweep = syn.build_sweep(n_prompts=3, scenes_per_prompt=4, levels=(0.0, 0.5, 1.0), seed=0)
    assert len(sweep) == 3 * 4 * 3 and len(sweep.prompts) == 3
    assert sweep.meta["expected_sign"] == -1
    scenes = sweep.meta["scenes"]
    # the same scene (objects) at each level, increasing degradation
    assert scenes[0].objects == scenes[1].objects == scenes[2].objects
    assert scenes[0].blur < scenes[1].blur < scenes[2].blur
    assert {s.background.replace(" ", "_") for s in scenes} == set(sweep.prompts)


# ----------------------------------------------------------------------------- evaluator
def test_oracle_reaches_high_agreement(oracle_quality):
    m = oracle_quality.metrics
    # the oracle's tag-aware probe reads the intent tags that no pixel shows, its
    # image-only probe cannot: a clear paired gain (both ~0.86 / ~0.34 here)
    assert m["tag_aware/SRCC"].value > 0.75
    assert m["image_only/SRCC"].value > 0.2
    assert m["gain/SRCC"].ci[0] > 0.1
    assert m["zero_shot/SRCC"].value > 0.4
    assert m["tag_aware/Error"].value < 0.35
    lo, hi = m["tag_aware/SRCC"].ci
    assert lo <= m["tag_aware/SRCC"].value <= hi
    assert m["zero_shot/Error"].value is None and "not on the MOS scale" in m["zero_shot/Error"].note
    assert m["gain/SRCC"].p_value is not None
    assert "eps=0.0001" in m["tag_aware/KL"].note and "0.5, 1.5" in m["tag_aware/EMD"].note
    assert "std =" in m["tag_aware/Error"].note and "var =" in m["tag_aware/Error"].note
    for kind in ("tag_aware", "image_only"):
        assert m[f"{kind}/Error_var"].value == pytest.approx(m[f"{kind}/Error_std"].value ** 2)
        lo, hi = m[f"{kind}/Error_var"].ci
        assert lo <= m[f"{kind}/Error_var"].value <= hi
    assert m["zero_shot/Error_var"].value is None
    assert len(oracle_quality.headline) <= 8
    assert all(h in m for h in oracle_quality.headline)


def test_output_is_json_and_has_per_tag_table(oracle_quality, quality_data):
    out = oracle_quality
    json.dumps({"m": {k: v.to_json() for k, v in out.metrics.items()}, "t": out.tables,
                "d": out.details}, allow_nan=False)
    rows = out.tables["per_tag"]
    assert {r["tag"] for r in rows} <= set(quality_data.tag_names.values())
    assert len(rows) >= 8 and all(r["n"] >= 5 for r in rows)
    assert {"tag_aware/SRCC", "tag_aware/Error", "image_only/SRCC", "image_only/Error"} <= set(rows[0])
    d = out.details
    assert d["splits"]["test"] == out.n
    assert d["dataset_report"]["n_issues"] == 0
    assert d["selection"]["tag_aware"]["best_epoch"] >= 0


def test_error_figures_equal_numpy_on_the_test_predictions(oracle_quality):
    preds = oracle_quality.details["predictions"]      # every test image (fewer than 5,000)
    mos = np.asarray(preds["mos"])
    for kind in ("tag_aware", "image_only"):
        e = np.abs(np.asarray(preds[kind]) - mos)      # rounded to 4 decimals in details
        m = oracle_quality.metrics
        assert m[f"{kind}/Error"].value == pytest.approx(e.mean(), abs=1e-4)
        assert m[f"{kind}/Error_var"].value == pytest.approx(e.var(), abs=1e-4)
        assert m[f"{kind}/Error_std"].value == pytest.approx(e.std(), abs=1e-4)


def test_random_backend_is_near_chance(quality_data):
    from ctxbench_plugins.random_backend import RandomBackend
    out = _run(_task("aesthetics_synthetic"), quality_data, RandomBackend(dim=32),
               {**FAST, "probes": ["image_only"]})
    assert abs(out.metrics["image_only/SRCC"].value) < 0.3
    assert "gain/SRCC" not in out.metrics


def test_test_split_never_influences_training(quality_data):
    """Selection uses validation only: corrupting the test votes changes nothing learned."""
    backend = AestheticsOracle(quality_data)
    proto = {**PROTOCOL_DEFAULTS, **FAST, "epochs": 15, "lr": [1e-3, 3e-3]}
    splits = features.make_splits(quality_data, proto, 0)
    assert not set(splits["test"]) & (set(splits["train"]) | set(splits["val"]))
    assert not set(splits["train"]) & set(splits["val"])
    corrupted = quality_data.subset(np.arange(len(quality_data)))
    corrupted.votes = corrupted.votes.copy()
    corrupted.votes[splits["test"]] = corrupted.votes[splits["test"]][:, ::-1]
    results = []
    for ds in (quality_data, corrupted):
        enc = CachedEncoder(backend, cache=None, progress=False)
        feats = features.encode(enc, ds, proto)
        fitted = probes.fit_probe("tag_aware", ds, feats, features.make_splits(ds, proto, 0), proto, 0)
        results.append((fitted.info, probes.predict(fitted.model, ds, feats, splits["test"])["image"]))
    assert results[0][0] == results[1][0]
    np.testing.assert_allclose(results[0][1], results[1][1])


def test_distribution_head_and_logistic_fit(quality_data):
    out = _run(_task("aesthetics_synthetic"), quality_data, AestheticsOracle(quality_data),
               {**FAST, "epochs": 30, "probes": ["tag_aware"], "distribution_head": True,
                "logistic_fit": True})
    nima = out.metrics["tag_aware/NIMA_EMD"]
    assert 0.0 < nima.value < 0.2 and "NIMA" in nima.note
    lcc_log = out.metrics["tag_aware/LCC_logistic"]
    assert lcc_log.value is not None and "logistic" in lcc_log.note
    assert "EMD" in out.details["selection"]["tag_aware"]["loss"]


def test_mse_only_loss_option(quality_data):
    out = _run(_task("aesthetics_synthetic"), quality_data, AestheticsOracle(quality_data),
               {**FAST, "epochs": 20, "probes": ["image_only"], "loss": "mse"})
    assert out.details["selection"]["image_only"]["loss"] == "MSE only"


def test_bad_protocol_is_refused(quality_data):
    with pytest.raises(TaskConfigError, match="protocol.probes"):
        _run(_task("aesthetics_synthetic"), quality_data, AestheticsOracle(quality_data),
             {"probes": ["nima"]})
    with pytest.raises(TaskConfigError, match="protocol.select_metric"):
        _run(_task("aesthetics_synthetic"), quality_data, AestheticsOracle(quality_data),
             {"select_metric": "accuracy"})


# ----------------------------------------------------------------------------- sweeps
def test_sweep_with_oracle_scorers():
    task = _task("aesthetics_degradation_sweep")
    sweep = syn.build_sweep(n_prompts=3, scenes_per_prompt=4, seed=0)
    scorer_data = syn.build_quality(n_images=600, seed=0)    # the aesthetics_synthetic task
    backend = AestheticsOracle(sweep, scorer_data)
    assert task.depends_on == {"scorer": "aesthetics_synthetic"}
    out = _run(task, sweep, backend, {**task.protocol, "n_resamples": 200,
                                      "scorer_probes": ["tag_aware"]},
               dependencies=_scorer(dataset=scorer_data))
    m = out.metrics
    assert m["zero_shot/agreement"].value > 0.9
    assert m["tag_aware/agreement"].value > 0.9
    assert m["tag_aware/rho"].value == pytest.approx(-m["tag_aware/agreement"].value)
    assert out.details["scorer_task"]["task"] == "aesthetics_synthetic"
    assert len(out.tables["per_prompt"]) == 3
    assert [r["degradation"] for r in out.tables["score_by_param"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    means = [r["tag_aware/mean"] for r in out.tables["score_by_param"]]
    assert means == sorted(means, reverse=True)
    json.dumps(out.tables, allow_nan=False)


def test_sweep_zero_shot_only_and_errors():
    from ctxbench_plugins.random_backend import RandomBackend
    task = _task("aesthetics_degradation_sweep")
    sweep = syn.build_sweep(n_prompts=2, scenes_per_prompt=3, seed=0)
    out = _run(task, sweep, RandomBackend(), {"scorer": "zero_shot", "n_resamples": 100})
    assert set(out.metrics) == {"zero_shot/rho", "zero_shot/agreement"}
    undeclared = dataclasses.replace(task, depends_on={})
    with pytest.raises(TaskConfigError, match=r"depends_on.*add 'depends_on: \{scorer: "):
        _run(undeclared, sweep, RandomBackend(), {"scorer": "probe"})
    assert set(_run(undeclared, sweep, RandomBackend(), {"n_resamples": 100}).metrics) == \
        {"zero_shot/rho", "zero_shot/agreement"}           # auto without a scorer task
    with pytest.raises(CtxbenchError, match="received no dependency 'scorer'"):
        _run(task, sweep, RandomBackend(), {"n_resamples": 100})   # declared, not passed
    not_quality = {"scorer": Dependency(task, sweep, dict(PROTOCOL_DEFAULTS))}
    with pytest.raises(TaskConfigError, match="not an aesthetics quality task"):
        _run(task, sweep, RandomBackend(), {"scorer": "probe"}, dependencies=not_quality)


def test_sweep_trains_on_the_dependency_with_its_protocol():
    """The probes follow the scorer task's dataset and protocol, not the sweep's."""
    from ctxbench_plugins.random_backend import RandomBackend
    task = _task("aesthetics_degradation_sweep")
    sweep = syn.build_sweep(n_prompts=2, scenes_per_prompt=3, seed=0)
    scorer_data = syn.build_quality(n_images=120, seed=0)
    proto = {"n_resamples": 50, "scorer_probes": ["image_only"]}
    out = _run(task, sweep, RandomBackend(dim=16), proto,
               dependencies=_scorer(dataset=scorer_data, epochs=3, lr=[1e-3, 3e-3]))
    info = out.details["scorer_task"]
    assert info["task"] == "aesthetics_synthetic" and info["task_hash"] == _task("aesthetics_synthetic").hash
    assert sum(info["splits"].values()) == 120
    assert info["selection"]["image_only"]["epochs_run"] <= 3
    assert len(info["selection"]["image_only"]["grid"]) == 2


# ----------------------------------------------------------------------------- tasks
def test_task_files_validate_and_real_data_skips(tmp_path, monkeypatch):
    from ctxbench.plugin_host import load_plugins
    host = load_plugins(entry_points=False)
    monkeypatch.setenv("CTXBENCH_DATA", str(tmp_path))
    specs = {p.stem: parse_task(p, host.families, host.loaders) for p in TASKS.glob("*.yaml")}
    assert {"aesthetics_synthetic", "aesthetics_degradation_sweep", "ava", "cfg_sweep"} <= set(specs)
    for name in ("ava", "cfg_sweep"):
        spec = specs[name]
        loader = host.loaders.get(spec.loader)
        with pytest.raises(DataNotFound, match="ctxbench|CFG"):
            loader.load(spec.options, LoadContext(spec.name, spec.path))
    spec = specs["aesthetics_synthetic"]
    ds = host.loaders.get(spec.loader).load(spec.options, LoadContext(spec.name, spec.path, limit=50))
    assert len(ds) == 50
