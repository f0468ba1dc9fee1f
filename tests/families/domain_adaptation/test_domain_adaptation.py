"""The domain_adaptation evaluator on controlled shifts.

A lookup backend returns hand-built embeddings: class text anchors nu_k (the class
prompts embed to nu_k), source images near nu_y, target images near
0.2 nu_y + R nu_y (R a random rotation: most of the class signal moves to directions
a source probe never saw). Captions embed near nu_y (informative) or at random
(noise). That is the situation TRUST targets: the text side is robust to the shift,
the image side is not.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from ctxbench.backend import Capabilities
from ctxbench.families.domain_adaptation.data import DomainDataset, DomainSplit
from ctxbench.encoder import CachedEncoder
from ctxbench.families.domain_adaptation.evaluator import evaluate
from ctxbench.families.domain_adaptation.model import holdout_val, soft_contrastive_loss
from ctxbench.families.domain_adaptation.protocol import PROTOCOL_DEFAULTS, check_protocol, metric_names
from ctxbench.families.domain_adaptation.text import certainty, class_prompt_embeddings, fit_temperature
from ctxbench.families.contract import EvalRequest
from ctxbench.inputs import ImageRef, pil_key

K, D = 6, 32
NOISE_MARGIN = 0.04   # adapt may fall at most this far below source_only when captions are noise
#                      (measured with the paired control run: 0.0 on the seeds below; unweighted
#                      pseudo-labels: -0.007, -0.069, -0.028)


class LookupBackend:
    """Embeds an image by its pixels' key and a text by its string (test-only)."""

    capabilities = Capabilities()

    def __init__(self, images: dict[str, np.ndarray], texts: dict[str, np.ndarray]):
        self.images, self.texts = images, texts

    def fingerprint(self) -> str:
        return "lookup:" + hashlib.sha256(str(sorted(self.texts)).encode()).hexdigest()[:12]

    def encode_images(self, images, contexts):
        return torch.tensor(np.stack([self.images[pil_key(im)] for im in images]), dtype=torch.float32)

    def encode_texts(self, texts, contexts):
        return torch.tensor(np.stack([self.texts[t] for t in texts]), dtype=torch.float32)


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def gaussian_shift(captions: str = "informative", seed: int = 0, per_class=None, signal: float = 0.2,
                   image_noise: float = 0.5):
    """(dataset, backend) for the shift described in the module docstring.

    ``captions``: "informative" (both domains), "noise" (both domains), "target_noise"
    (informative on the source, noise on the target)."""
    rng = np.random.default_rng(seed)
    per_class = per_class or {"train": 40, "val": 15, "test": 30}
    nu = _unit(rng.standard_normal((K, D)))
    rot, _ = np.linalg.qr(rng.standard_normal((D, D)))
    classes = [f"c{k}" for k in range(K)]
    images: dict[str, np.ndarray] = {}
    texts: dict[str, np.ndarray] = {f"a photo of a {c}.": nu[k] for k, c in enumerate(classes)}
    counter = [0]

    def make_split(domain: str, split: str, n: int) -> DomainSplit:
        labels = np.repeat(np.arange(K), n)
        base = nu[labels] if domain == "src" else signal * nu[labels] + nu[labels] @ rot.T
        x = base + image_noise * rng.standard_normal((len(labels), D)) / np.sqrt(D)
        if captions == "informative" or (captions == "target_noise" and domain == "src"):
            u = nu[labels] + 0.6 * rng.standard_normal((len(labels), D)) / np.sqrt(D)
        else:
            u = rng.standard_normal((len(labels), D))
        refs, caps = [], []
        for i in range(len(labels)):
            counter[0] += 1
            c = counter[0]
            img = Image.new("RGB", (2, 2), (c % 256, (c // 256) % 256, c // 65536))
            images[pil_key(img)] = x[i]
            refs.append(ImageRef.from_pil(img))
            cap = f"{domain}/{split}/{i} caption"
            texts[cap] = u[i]
            caps.append(cap)
        return DomainSplit(refs, labels, caps, [()] * len(labels), [f"{domain}/{split}/{i}" for i in range(len(labels))])

    domains = {"src": {s: make_split("src", s, n) for s, n in per_class.items()},
               "tgt": {s: make_split("tgt", s, n) for s, n in per_class.items() if s != "val"}}
    return DomainDataset("gauss", classes, domains), LookupBackend(images, texts)


def run(ds, backend, seed=0, **protocol):
    enc = CachedEncoder(backend, cache=None, progress=False)
    p = {**PROTOCOL_DEFAULTS, "source": "src", "target": "tgt", "bootstrap_resamples": 500, **protocol}
    return evaluate(EvalRequest(task=None, dataset=ds, encoder=enc, protocol=p, seed=seed))


def gains(captions, seeds=(0, 1, 2), **protocol):
    out = []
    for seed in seeds:
        ds, backend = gaussian_shift(captions, seed)
        res = run(ds, backend, seed=seed, protocols=["source_only", "adapt"], **protocol)
        out.append(res)
    return out


# ----------------------------------------------------------------------------- the method
def test_informative_captions_adaptation_beats_source_only_on_target():
    for res in gains("informative"):
        m = res.metrics
        so, ad = m["src->tgt/source_only/top1"].value, m["src->tgt/adapt/top1"].value
        assert ad > so + 0.3, (so, ad)
        gain = m["src->tgt/adapt/gain"]
        assert gain.value == pytest.approx(ad - so)
        assert gain.ci[0] > 0 and gain.p_value < 0.01
        assert res.details["per_pair"]["src->tgt"]["pseudo_label_accuracy"] > 0.95


def test_noise_captions_certainty_weighting_keeps_adapt_near_source_only():
    weighted = gains("noise")
    unweighted = gains("noise", certainty="none")
    g_w = [r.metrics["src->tgt/adapt/gain"].value for r in weighted]
    g_u = [r.metrics["src->tgt/adapt/gain"].value for r in unweighted]
    for res, g in zip(weighted, g_w):
        assert g >= -NOISE_MARGIN, g_w
        assert res.details["per_pair"]["src->tgt"]["mean_certainty"] < 0.05
        assert res.metrics["src->tgt/adapt/gain_significant"].value == 0.0   # no gain claimed
    # the weighting is what protects: without it the same noise costs clearly more
    assert np.mean(g_u) < np.mean(g_w) - 0.02, (g_u, g_w)


def test_caption_probe_pseudo_labeler_also_adapts():
    res = gains("informative", seeds=(0,), pseudo_labels="caption_probe")[0]
    assert res.metrics["src->tgt/adapt/gain"].value > 0.3


def test_nothing_is_selected_on_target_labels():
    """Relabelling the target test and train splits changes the scores, never the
    training: same epochs, temperatures, certainties and source-validation scores."""
    ds, backend = gaussian_shift("informative", 0)
    base = run(ds, backend)
    perm = np.roll(np.arange(K), 1)
    for split in ("train", "test"):
        ds.domains["tgt"][split].labels = perm[ds.domains["tgt"][split].labels]
    moved = run(ds, backend)
    keys = ("temperature", "mean_certainty", "adapt_best_epochs", "adapt_source_val_top1",
            "source_only_best_epochs", "source_only_source_val_top1")
    a, b = base.details["per_pair"]["src->tgt"], moved.details["per_pair"]["src->tgt"]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert base.details["source_val"] == moved.details["source_val"]
    assert base.metrics["src->tgt/adapt/top1"].value != moved.metrics["src->tgt/adapt/top1"].value


def test_drop_and_source_accuracy_are_consistent():
    ds, backend = gaussian_shift("informative", 1)
    m = run(ds, backend).metrics
    for proto in ("zero_shot", "source_only", "adapt"):
        drop = m[f"src->tgt/{proto}/source_top1"].value - m[f"src->tgt/{proto}/top1"].value
        assert m[f"src->tgt/{proto}/drop"].value == pytest.approx(drop)
        lo, hi = m[f"src->tgt/{proto}/top1"].ci
        assert lo <= m[f"src->tgt/{proto}/top1"].value <= hi
    assert m["src->tgt/zero_shot/source_top1"].value == pytest.approx(1.0)


def test_zero_adaptation_weights_give_exactly_zero_gain():
    """source_only is the adapt run with both adaptation weights at 0: same batches,
    same order, same seeds, so the gain is exactly 0 (not training-run variance)."""
    ds, backend = gaussian_shift("informative", 0)
    m = run(ds, backend, protocols=["source_only", "adapt"], lambda_pseudo=0.0, lambda_contrastive=0.0).metrics
    assert m["src->tgt/adapt/top1"].value == m["src->tgt/source_only/top1"].value
    for name in ("gain", "gain_mpca", "gain_seeds", "gain_mpca_seeds"):
        assert m[f"src->tgt/adapt/{name}"].value == 0.0, name
    assert m["src->tgt/adapt/gain_seeds"].ci == (0.0, 0.0)
    assert m["src->tgt/adapt/gain_significant"].value == 0.0


def test_zero_adaptation_weights_give_zero_gain_for_every_pair_of_the_embedded_task(small_synth):
    from ctxbench_plugins.random_backend import RandomBackend
    out = run(small_synth, RandomBackend(dim=16), source=None, target=None, pairs="all",
              protocols=["source_only", "adapt"], lambda_pseudo=0.0, lambda_contrastive=0.0,
              bootstrap_resamples=100, epochs=5)
    for pair in out.details["pairs"] + ["mean"]:
        assert out.metrics[f"{pair}/adapt/gain"].value == 0.0, pair
        assert out.metrics[f"{pair}/adapt/gain_seeds"].value == 0.0, pair
        assert out.metrics[f"{pair}/adapt/gain_significant"].value == 0.0, pair


def test_informative_captions_give_a_gain_beyond_the_training_seed_spread():
    res = run(*gaussian_shift("informative", 0), protocols=["source_only", "adapt"], training_seeds=3)
    m = res.metrics
    gain, seeds = m["src->tgt/adapt/gain"], m["src->tgt/adapt/gain_seeds"]
    assert seeds.n == 3 and seeds.value == pytest.approx(gain.value)
    lo, hi = seeds.ci
    assert lo > 0 and gain.value > 3 * (hi - lo) / 2, (gain.value, seeds.ci)
    assert m["src->tgt/adapt/gain_significant"].value == 1.0
    assert m["src->tgt/adapt/gain_significant"].p_value < 0.05
    assert len(res.details["per_pair"]["src->tgt"]["adapt_best_epochs"]) == 3


def test_one_training_seed_reports_no_seed_interval():
    m = run(*gaussian_shift("informative", 0), protocols=["source_only", "adapt"], training_seeds=1).metrics
    assert m["src->tgt/adapt/gain_seeds"].ci is None
    assert m["src->tgt/adapt/gain_significant"].value is None


# ----------------------------------------------------------------------------- pieces
def test_certainty_definitions():
    probs = torch.tensor([[1.0, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(certainty(probs, "entropy").numpy(), [1.0, 0.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(certainty(probs, "margin").numpy(), [1.0, 0.0, 0.0], atol=1e-6)
    assert certainty(probs, "none").tolist() == [1.0, 1.0, 1.0]
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0]])
    got = certainty(torch.full((3, 3), 1 / 3), "clip", image=img, text=txt, clip_batch=3)
    s = 100.0 / 3.0
    expected = [np.exp(s) / (2 * np.exp(s) + 1), np.exp(s) / (np.exp(s) + 2), 1 / 3]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_temperature_scaling_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    cos = torch.tensor(rng.uniform(-0.3, 0.3, (6000, 5)))
    probs = torch.softmax(cos / 0.05, dim=1).numpy()
    labels = np.array([rng.choice(5, p=p) for p in probs])
    tau = fit_temperature(cos, labels)
    assert 0.04 < tau < 0.0625


def test_soft_contrastive_loss_matches_a_loop_reference():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    u = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    w = torch.rand(5)
    tau = 0.2
    total = 0.0
    for i in range(5):
        sim = [max(0.0, float(u[i] @ u[k])) for k in range(5)]
        den = sum(max(1e-6, 1 - sim[k]) * np.exp(float(z[i] @ u[k]) / tau) for k in range(5))
        li = -sum(sim[j] / sum(sim) * (float(z[i] @ u[j]) / tau - np.log(den)) for j in range(5))
        total += float(w[i]) * li
    got = soft_contrastive_loss(z[None], u[None], w[None], torch.ones(1, 5, dtype=torch.bool), tau)
    assert got.shape == (1,) and float(got[0]) == pytest.approx(total / 5, rel=1e-4)


def test_soft_contrastive_loss_of_members_is_the_loss_of_the_members_alone():
    """A batch's non-members (its source items) are neither anchors nor candidates:
    run r's loss equals the loss of its members on their own; fewer than 2 give 0."""
    torch.manual_seed(1)
    z = torch.nn.functional.normalize(torch.randn(3, 6, 4), dim=-1)
    u = torch.nn.functional.normalize(torch.randn(3, 6, 4), dim=-1)
    w = torch.rand(3, 6)
    members = torch.tensor([[1, 0, 1, 1, 0, 1], [1, 1, 1, 1, 1, 1], [0, 0, 1, 0, 0, 0]], dtype=torch.bool)
    got = soft_contrastive_loss(z, u, w, members, 0.1)
    for r in range(2):
        m = members[r]
        alone = soft_contrastive_loss(z[r, m][None], u[r, m][None], w[r, m][None],
                                      torch.ones(1, int(m.sum()), dtype=torch.bool), 0.1)
        assert float(got[r]) == pytest.approx(float(alone[0]), rel=1e-5)
    assert float(got[2]) == 0.0


def test_holdout_val_is_per_class_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), [10, 20, 1, 30])
    tr, va = holdout_val(labels, 0.1, seed=0)
    assert set(tr).isdisjoint(va) and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va], minlength=4).tolist() == [1, 2, 0, 3]
    tr2, va2 = holdout_val(labels, 0.1, seed=0)
    assert va.tolist() == va2.tolist()


def test_protocol_errors_are_explained():
    ds, backend = gaussian_shift("informative", 0, per_class={"train": 3, "val": 2, "test": 2})
    with pytest.raises(ValueError, match="not in the dataset"):
        run(ds, backend, target="mars")
    with pytest.raises(ValueError, match="not both"):
        run(ds, backend, pairs="all")
    with pytest.raises(ValueError, match="source->target"):
        run(ds, backend, source=None, target=None, pairs=["src:tgt"])
    with pytest.raises(ValueError, match="certainty"):
        run(ds, backend, certainty="vibes")


# ----------------------------------------------------------------------------- embedded task
class ShapeOracle:
    """Knows the world: an image embeds as one-hot(shape) + 0.5 one-hot(style); a text
    as one-hot of the shape it names (a ``pad`` axis when it names none)."""

    capabilities = Capabilities()

    def __init__(self, ds):
        from ctxbench.synthetic_world import SHAPES, STYLES
        self.shapes, self.styles = list(SHAPES), list(STYLES)
        self.dim = len(SHAPES) + len(STYLES) + 1
        self.scene_of = {}
        for splits in ds.domains.values():
            for split in splits.values():
                for ref, item_id in zip(split.refs, split.ids):
                    self.scene_of[pil_key(ref.load())] = ds.meta["scenes"][item_id]

    def fingerprint(self):
        return "shape-oracle"

    def encode_images(self, images, contexts):
        out = torch.zeros(len(images), self.dim)
        for i, im in enumerate(images):
            scene = self.scene_of[pil_key(im)]
            out[i, self.shapes.index(scene.objects[0].shape)] = 1.0
            out[i, len(self.shapes) + self.styles.index(scene.style)] = 0.5
        return out

    def encode_texts(self, texts, contexts):
        import re
        out = torch.zeros(len(texts), self.dim)
        for i, t in enumerate(texts):
            named = [k for k, s in enumerate(self.shapes) if re.search(rf"\b{s}\b", t)]
            out[i, named[0] if named else self.dim - 1] = 1.0
        return out


@pytest.fixture(scope="module")
def small_synth():
    from ctxbench.families.domain_adaptation.synthetic import build
    return build(domains=("flat", "line_drawing", "photo"), per_class={"train": 3, "val": 1, "test": 2}, seed=0)


def test_oracle_zero_shot_is_perfect_and_partial_captions_carry_no_certainty(small_synth):
    backend = ShapeOracle(small_synth)
    out = run(small_synth, backend, source=None, target=None, pairs="all",
              protocols=["zero_shot"], bootstrap_resamples=200)
    assert len(out.details["pairs"]) == 6
    for pair in out.details["pairs"]:
        assert out.metrics[f"{pair}/zero_shot/top1"].value == 1.0
        assert out.metrics[f"{pair}/zero_shot/mpca"].value == 1.0
    enc = CachedEncoder(backend, cache=None, progress=False)
    split = small_synth.domains["photo"]["train"]
    prompts = class_prompt_embeddings(enc, small_synth.classes, ["a photo of a {}."])
    u = torch.nn.functional.normalize(enc.texts(split.captions), dim=-1)
    conf = certainty(torch.softmax(u @ prompts.T / 0.01, dim=1), "entropy")
    q = np.array(split.quality)
    assert torch.all(conf[torch.from_numpy(q == "partial")] < 1e-6)
    assert torch.all(conf[torch.from_numpy(q != "partial")] > 0.99)


def test_embedded_task_all_pairs_with_random_backend(small_synth):
    import json
    from ctxbench_plugins.random_backend import RandomBackend
    out = run(small_synth, RandomBackend(dim=16), source=None, target=None, pairs="all",
              bootstrap_resamples=200, epochs=5)
    assert len(out.headline) <= 8 and all(h in out.metrics for h in out.headline)
    assert out.headline[:2] == ["mean/adapt/top1", "mean/adapt/mpca"]
    assert out.metrics["mean/adapt/top1"].n == 6
    matrix = out.tables["matrix source_only top1"]
    assert [row["source \\ target"] for row in matrix] == ["flat", "line_drawing", "photo"]
    assert all(row[row["source \\ target"]] is not None for row in matrix)   # in-domain diagonal
    assert len(out.tables["pairs"]) == 6 * 3
    json.dumps({"m": {k: v.to_json() for k, v in out.metrics.items()}, "t": out.tables, "d": out.details})


# ----------------------------------------------------------------------------- protocol and names
def test_metric_names_are_exactly_what_the_evaluator_emits(small_synth):
    from ctxbench_plugins.random_backend import RandomBackend
    p = {**PROTOCOL_DEFAULTS, "pairs": "all", "bootstrap_resamples": 50, "epochs": 2}
    out = evaluate(EvalRequest(task=None, dataset=small_synth,
                               encoder=CachedEncoder(RandomBackend(dim=16), cache=None, progress=False),
                               protocol=p, seed=0))
    emitted = set(out.metrics)
    assert emitted == set(metric_names(p, domains=list(small_synth.domains)))
    assert set(metric_names(p)) <= emitted and set(out.headline) <= set(metric_names(p))
    ds, backend = gaussian_shift("informative", 0, per_class={"train": 4, "val": 2, "test": 3})
    for protos in (["zero_shot"], ["source_only", "adapt"], ["adapt"]):
        one = run(ds, backend, protocols=protos, epochs=2, bootstrap_resamples=50)
        q = {**PROTOCOL_DEFAULTS, "source": "src", "target": "tgt", "protocols": protos}
        assert set(one.metrics) == set(metric_names(q)), protos


@pytest.mark.parametrize("option, value", [
    ("protocols", ["zero_shot", "sideways"]), ("protocols", []), ("certainty", "vibes"),
    ("pseudo_labels", "oracle"), ("prompt_templates", ["no placeholder"]), ("val_fraction", 1.5),
    ("lambda_pseudo", -1), ("epochs", 0), ("batch_size", 2.5), ("calibrate_temperature", "yes"),
    ("temperature", 0), ("bootstrap_resamples", True), ("pairs", ["a-b"])])
def test_check_protocol_names_the_offending_option(option, value):
    from ctxbench.errors import ProtocolError
    p = {**PROTOCOL_DEFAULTS, "source": "usa", "target": "asia"}
    if option == "pairs":
        p.update(source=None, target=None)
    p[option] = value
    with pytest.raises(ProtocolError) as err:
        check_protocol(p)
    assert err.value.option == option


def test_shipped_protocols_pass_the_check():
    check_protocol({**PROTOCOL_DEFAULTS, "pairs": "all"})
    check_protocol({**PROTOCOL_DEFAULTS, "source": "usa", "target": "asia"})


# (the light-import check of this family's hooks is in tests/core/test_family_contract.py)


