"""metadata_sentiment evaluator: relevance gates, drop-one-field contribution, fusion gain, splits, zero-shot,
label distributions, determinism, the embedded dataset's structure (oracle backend),
and the task YAMLs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.functional import normalize

from ctxbench.backend import Capabilities
from ctxbench.families.metadata_sentiment.data import FI_EMOTIONS, POSITIVE_EMOTIONS, SentimentDataset
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import DataNotFound
from ctxbench.families.metadata_sentiment.heads import LinearHead, RelevanceFusionHead
from ctxbench.families.metadata_sentiment.training import fit_probe, predict, standardise
from ctxbench.families.metadata_sentiment.protocol import HEADLINE, PAPER_PROMPT, PROTOCOL_DEFAULTS
from ctxbench.families.metadata_sentiment.evaluator import evaluate, field_texts, resolve_splits
from ctxbench.families.contract import EvalRequest
from ctxbench.inputs import ImageRef, pil_key
from ctxbench.probe import stratified_split
from ctxbench.registrations import LoadContext
from ctxbench.families.metadata_sentiment import synthetic as synth
from ctxbench import synthetic_world as world
from ctxbench_plugins.random_backend import RandomBackend

TASKS = Path(__file__).resolve().parents[3] / "tasks" / "metadata_sentiment"
FIELDS3 = {"caption": "{caption}", "objects": "the image contains the following objects: {objects}",
           "scene": "the scene or background of image is {scene}"}


def _request(ds, backend, seed=0, **protocol):
    return EvalRequest(task=None, dataset=ds, encoder=CachedEncoder(backend, None, progress=False),
                       protocol={**PROTOCOL_DEFAULTS, **protocol}, seed=seed)


# ----------------------------------------------------------------------------- gates (issue item 4)
def _gate_data(seed, n=900, d=24, k=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    protos = rng.standard_normal((k, d))
    image = 0.35 * protos[y] + rng.standard_normal((n, d))       # weakly informative
    informative = protos[y] + rng.standard_normal((n, d))        # carries the label
    noise = rng.standard_normal((n, d))                          # pure noise
    x = normalize(torch.tensor(np.stack([image, informative, noise], 1), dtype=torch.float32), dim=-1)
    mask = torch.ones(n, 3, dtype=torch.bool)
    mask[torch.from_numpy(rng.random(n) < 0.15), 1] = False       # some items miss the good field
    return x, mask, y


@pytest.mark.parametrize("seed", [0, 1])
def test_relevance_gate_prefers_informative_field_and_fusion_beats_image_only(seed):
    x, mask, y = _gate_data(seed)
    k, d = 4, x.shape[-1]
    splits = stratified_split(y, (0.6, 0.2, 0.2), seed)
    targets = torch.eye(k)[torch.from_numpy(y)]
    common = dict(weight_decays=[1e-4], epochs=60, patience=10, batch_size=128, seed=seed)
    xs = standardise(x, splits["train"], mask)
    fusion = fit_probe(lambda: RelevanceFusionHead(d, 3, k, 64, 4, 0.1), [xs, mask], targets,
                           splits["train"], splits["val"], y[splits["val"]], lr=1e-3, **common)
    xi = standardise(x[:, 0], splits["train"])
    linear = fit_probe(lambda: LinearHead(d, k), [xi], targets, splits["train"], splits["val"],
                           y[splits["val"]], lr=1e-2, **common)
    test = splits["test"]
    p_fusion, gates = predict(fusion.model, [xs, mask], test)
    p_image, _ = predict(linear.model, [xi], test)
    both = mask[torch.as_tensor(test)].all(1).numpy()
    g_info, g_noise = gates[both, 0].mean(), gates[both, 1].mean()
    assert g_info > g_noise + 0.1 and g_noise < 0.45, (g_info, g_noise)
    # where the informative field is missing, all weight goes to the one field left
    alone = ~mask[torch.as_tensor(test), 1].numpy()
    np.testing.assert_allclose(gates[alone, 1], 1.0, atol=1e-6)
    acc_f = (p_fusion.argmax(1) == y[test]).mean()
    acc_i = (p_image.argmax(1) == y[test]).mean()
    assert acc_f > acc_i + 0.05, (acc_f, acc_i)
    # contribution (known truth): masking the informative field costs accuracy, masking the
    # pure-noise field costs (almost) nothing
    drops = []
    for j in (1, 2):
        masked = mask.clone()
        masked[:, j] = False
        p_without, _ = predict(fusion.model, [xs, masked], test)
        drops.append(acc_f - (p_without.argmax(1) == y[test]).mean())
    assert drops[0] > 0.1 and drops[1] < 0.05, drops   # masking noise may even help


def test_fusion_head_masks_missing_fields():
    torch.manual_seed(0)
    head = RelevanceFusionHead(8, 3, 2, dim=16, heads=2, dropout=0.0).eval()
    x = torch.randn(4, 3, 8)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 0, 0], [1, 1, 0]], dtype=torch.bool)
    logits, gates = head(x, mask)
    assert torch.isfinite(logits).all()
    np.testing.assert_allclose(gates.sum(1).detach().numpy(), [1, 1, 0, 1], atol=1e-6)
    assert gates[1, 0] == 0 and gates[2].abs().sum() == 0 and gates[3, 1] == 0
    # a masked field's content cannot change the output
    x2 = x.clone()
    x2[1, 1] += 100.0
    x2[2, 1:] -= 50.0
    logits2, _ = head(x2, mask)
    torch.testing.assert_close(logits[1:3], logits2[1:3])


# ----------------------------------------------------------------------------- oracle on the world
class SentimentOracle:
    """Test backend that knows the generator: it recognises each picture by its pixels
    (rendered from ``ds.meta["scenes"]``). Image: one-hot of the first object's look
    (warm/cool colour) and of its shape. Text: indicators of the mood phrases, mood
    objects and background names it contains (a pad coordinate when none)."""

    capabilities = Capabilities(context_method="none")

    def __init__(self, ds):
        size = ds.meta["size"]
        self.scenes = {pil_key(world.render(s, size)): s for s in ds.meta["scenes"]}
        self.moods = [synth.MOOD[e] for e in FI_EMOTIONS]
        self.objects = [synth.MOOD_OBJECT[e] for e in FI_EMOTIONS]
        self.backgrounds = list(world.BACKGROUNDS)
        self.shapes = list(world.SHAPES)
        self.look = 16 + len(self.backgrounds)
        self.dim = self.look + 2 + len(self.shapes) + 1

    def fingerprint(self):
        return "sentiment-oracle"

    def encode_images(self, images, contexts):
        out = torch.zeros(len(images), self.dim)
        for row, im in enumerate(images):
            first = self.scenes[pil_key(im)].objects[0]
            out[row, self.look + (0 if first.colour in world.WARM_COLOURS else 1)] = 1.0
            out[row, self.look + 2 + self.shapes.index(first.shape)] = 1.0
        return out

    def encode_texts(self, texts, contexts):
        out = torch.zeros(len(texts), self.dim)
        for row, text in enumerate(texts):
            for e in range(8):
                out[row, e] += self.moods[e] in text
                out[row, 8 + e] += self.objects[e] in text
            for b, name in enumerate(self.backgrounds):
                out[row, 16 + b] += f" {name}" in f" {text}"
            if out[row].sum() == 0:
                out[row, -1] = 1.0
        return out


@pytest.fixture(scope="module")
def synthetic_run():
    ds = synth.build(n_per_class=50, seed=0)
    out = evaluate(_request(ds, SentimentOracle(ds), fields=FIELDS3, bootstrap_resamples=500))
    return ds, out


def test_embedded_dataset_draws_mood_in_colour_and_light(synthetic_run):
    ds, _ = synthetic_run
    scenes = ds.meta["scenes"]
    positive = np.array([FI_EMOTIONS[k] in POSITIVE_EMOTIONS for k in ds.labels])
    warm = np.array([s.objects[0].colour in world.WARM_COLOURS for s in scenes])
    bright = np.array([s.lighting == "bright" for s in scenes])
    assert (warm == positive).mean() > 0.8
    assert bright[positive].mean() > 0.6 and bright[~positive].mean() < 0.2
    # pixels: positive pictures are brighter on average
    lum = np.array([np.asarray(ref.load(), dtype=float).mean() for ref in ds.images])
    assert lum[positive].mean() > lum[~positive].mean() + 20
    # metadata reliability: the caption names the true mood far more often than the scene helps
    named = np.array([c is not None and synth.MOOD[FI_EMOTIONS[k]] in c for c, k in zip(ds.text["caption"], ds.labels)])
    assert named.mean() > 0.6
    mood_objects = set(synth.MOOD_OBJECT.values())
    # the default 0.4 threshold drops the low-scoring decoy: one mood object per image
    assert all(len(set(o) & mood_objects) == 1 for o in ds.objects)
    loose = synth.build(n_per_class=50, seed=0, tag_threshold=0.0)
    assert max(len(set(o) & mood_objects) for o in loose.objects) == 2
    assert ds.images[0].key == synth.build(n_per_class=50, seed=0).images[0].key


def test_embedded_dataset_structure_with_oracle(synthetic_run):
    ds, out = synthetic_run
    m = out.metrics
    image_acc, fusion_acc = m["image_probe/accuracy"].value, m["fusion_probe/accuracy"].value
    # the picture gives polarity and sometimes the emotion; the caption names the mood
    assert 0.3 < image_acc < 0.7
    assert fusion_acc > 0.7 and fusion_acc > image_acc + 0.1
    gain = m["fusion_gain/accuracy"]
    assert gain.value == pytest.approx(fusion_acc - image_acc)
    assert gain.ci[0] > 0 and gain.p_value < 0.05
    # image_gain is image_probe minus zero_shot on the same test items (paired)
    image_gain = m["image_gain/accuracy"]
    assert image_gain.value == pytest.approx(image_acc - m["zero_shot/accuracy"].value)
    assert image_gain.ci[0] <= image_gain.value <= image_gain.ci[1]
    gate = {f: m[f"fusion_probe/gate_mean/{f}"].value for f in ("caption", "objects", "scene")}
    assert gate["caption"] > gate["objects"] > gate["scene"], gate
    assert gate["scene"] < 1 / 3 < gate["caption"]
    table = out.tables["field contribution"]
    assert [r["source"] for r in table] == ["caption", "objects", "scene"]
    assert [r["gate_mean"] for r in table] == pytest.approx([gate[f] for f in ("caption", "objects", "scene")],
                                                            abs=1e-4)
    assert all(r["uniform_gate"] == pytest.approx(1 / 3, abs=1e-4) for r in table)
    # contribution: the drop-one-field accuracy drop ranks the pure-noise scene field last; the
    # caption's drop is beyond its paired-bootstrap CI, the scene's CI covers 0
    drop = {f: m[f"fusion_probe/contribution/{f}"] for f in ("caption", "objects", "scene")}
    assert drop["scene"].value < drop["objects"].value < drop["caption"].value, drop
    assert [r["rank"] for r in table] == [1, 2, 3]
    assert drop["caption"].ci[0] > 0 and drop["caption"].p_value < 0.05
    assert drop["scene"].ci[0] <= 0 <= drop["scene"].ci[1]
    for f in drop:
        without = m[f"fusion_probe/accuracy_without/{f}"].value
        assert drop[f].value == pytest.approx(fusion_acc - without)
        row = next(r for r in table if r["source"] == f)
        assert row["accuracy_drop"] == pytest.approx(drop[f].value, abs=1e-4)
    # confusion matrices (rows true, columns predicted) agree with the reported accuracy
    conf = np.array(out.details["confusion"]["fusion_probe"])
    assert conf.shape == (8, 8) and conf.sum() == out.n
    assert np.trace(conf) / conf.sum() == pytest.approx(fusion_acc)
    # zero-shot: the oracle's class prompts carry no mood words -> chance-level ties
    assert m["zero_shot/accuracy"].value <= 0.3
    assert set(out.headline) == set(HEADLINE)


def test_result_records_splits_seed_and_selection(synthetic_run):
    ds, out = synthetic_run
    d = out.details
    assert d["split_source"] == "stratified" and d["split_seed"] == 0
    assert d["split_sizes"] == {"train": 240, "val": 80, "test": 80} and out.n == 80
    assert set(d["selection"]) == {"image_probe", "fusion_probe"}
    assert d["selection"]["fusion_probe"]["weight_decay"] in PROTOCOL_DEFAULTS["weight_decays"]
    assert d["generator_version"] == world.GENERATOR_VERSION
    for row in out.tables["per-class accuracy"]:
        assert set(row) == {"class", "zero_shot", "image_probe", "fusion_probe"}
    import json
    json.dumps(d), json.dumps(out.tables)
    for v in out.metrics.values():
        json.dumps(v.to_json())


def test_same_seed_identical_metrics_different_seed_differs():
    ds = synth.build(n_per_class=12, seed=1)
    runs = [evaluate(_request(ds, RandomBackend(dim=32), seed=s, epochs=15, bootstrap_resamples=200))
            for s in (3, 3, 4)]
    a, b, c = ({k: v.to_json() for k, v in r.metrics.items()} for r in runs)
    assert a == b
    assert runs[0].details["field_contribution"] == runs[1].details["field_contribution"]
    assert runs[0].details["split_sizes"] == runs[2].details["split_sizes"]
    assert a != c


# ----------------------------------------------------------------------------- zero-shot, splits, LDL
class TableBackend:
    """Hand-made embeddings: images and texts looked up by a fixed table."""

    capabilities = Capabilities()

    def __init__(self, image_vecs, text_vecs):
        self.image_vecs, self.text_vecs = image_vecs, text_vecs

    def fingerprint(self):
        return "table"

    def encode_images(self, images, contexts):
        return torch.stack([torch.tensor(self.image_vecs[im.getpixel((0, 0))], dtype=torch.float32)
                            for im in images])

    def encode_texts(self, texts, contexts):
        return torch.stack([torch.tensor(self.text_vecs.get(t, [0.0, 0.0, 1.0]), dtype=torch.float32)
                            for t in texts])


def _tiny_dataset(labels, distributions=None, splits=None, colours=None):
    from PIL import Image
    colours = colours or [(i, 0, 0) for i in range(len(labels))]
    images = [ImageRef.from_pil(Image.new("RGB", (4, 4), c)) for c in colours]
    return SentimentDataset("tiny", ("negative", "positive"), images, np.asarray(labels),
                            distributions, {"caption": [None] * len(labels)}, [None] * len(labels), splits)


def test_zero_shot_template_average_by_hand():
    # two templates; class 'positive' prompts point at (1,0) and (1,1); 'negative' at (0,1) and (-1,1)
    texts = {"A negative": [0.0, 1.0, 0.0], "B negative": [-1.0, 1.0, 0.0],
             "A positive": [1.0, 0.0, 0.0], "B positive": [1.0, 1.0, 0.0]}
    # prototypes: pos ~ normalize((1,0)+(1,1)/sqrt2) ; neg ~ normalize((0,1)+(-1,1)/sqrt2)
    image_vecs = {(0, 0, 0): [1.0, 0.2, 0.0], (1, 0, 0): [-0.1, 1.0, 0.0], (2, 0, 0): [0.6, 1.0, 0.0]}
    ds = _tiny_dataset([1, 0, 1])
    out = evaluate(_request(ds, TableBackend(image_vecs, texts), protocols=["zero_shot"],
                                templates=["A {}", "B {}"], bootstrap_resamples=100))
    s2 = 1 / math.sqrt(2)
    pos = np.array([1 + s2, s2]) / np.linalg.norm([1 + s2, s2])
    neg = np.array([-s2, 1 + s2]) / np.linalg.norm([-s2, 1 + s2])
    expected = []
    for c in [(1.0, 0.2), (-0.1, 1.0), (0.6, 1.0)]:
        v = np.array(c) / np.linalg.norm(c)
        expected.append(int(v @ pos > v @ neg))
    assert expected == [1, 0, 1]
    # zero-shot only and no own split: every item is evaluated
    assert out.n == 3 and out.details["split_sizes"]["test"] == 3
    assert out.metrics["zero_shot/accuracy"].value == pytest.approx(np.mean(np.array(expected) == [1, 0, 1]))
    assert out.headline == ["zero_shot/accuracy"]


def test_own_splits_are_used_and_validation_carved_from_train():
    labels = np.array([0, 1] * 30)
    ds = _tiny_dataset(labels, splits={"train": np.arange(40), "test": np.arange(40, 60)})
    splits, info = resolve_splits(ds, PROTOCOL_DEFAULTS, seed=5)
    np.testing.assert_array_equal(splits["test"], np.arange(40, 60))
    assert set(splits["train"]) | set(splits["val"]) == set(range(40))
    assert not set(splits["train"]) & set(splits["val"]) and len(splits["val"]) == 4
    assert info["split_source"].startswith("dataset") and info["split_sizes"]["test"] == 20
    ds2 = _tiny_dataset(labels, splits={"train": np.arange(30), "val": np.arange(30, 40),
                                         "test": np.arange(40, 60)})
    splits2, info2 = resolve_splits(ds2, PROTOCOL_DEFAULTS, seed=5)
    np.testing.assert_array_equal(splits2["val"], np.arange(30, 40)) and info2["split_source"] == "dataset"


def test_label_distributions_train_soft_and_report_kl():
    rng = np.random.default_rng(0)
    n = 120
    labels = rng.integers(0, 2, n)
    dist = np.where(labels[:, None] == 1, [0.2, 0.8], [0.7, 0.3])
    image_vecs = {(i % 256, i // 256, 0): [float(labels[i]) + 0.3 * rng.standard_normal(), 1.0, 0.0]
                  for i in range(n)}
    ds = _tiny_dataset(labels, distributions=dist, colours=[(i % 256, i // 256, 0) for i in range(n)])
    out = evaluate(_request(ds, TableBackend(image_vecs, {}), protocols=["image_probe"],
                                bootstrap_resamples=100))
    kl = out.metrics["image_probe/kl"]
    assert out.details["label_distributions"] is True
    assert 0 <= kl.value < 0.2 and kl.ci[0] <= kl.value <= kl.ci[1]
    assert out.metrics["image_probe/accuracy"].value > 0.8
    assert "fusion_gain/accuracy" not in out.metrics


def test_fusion_without_any_metadata_is_not_applicable():
    ds = _tiny_dataset([0, 1] * 10)
    out = evaluate(_request(ds, RandomBackend(dim=8), protocols=["image_probe", "fusion_probe"],
                                epochs=3, bootstrap_resamples=50))
    assert out.metrics["fusion_probe/accuracy"].value is None
    assert "no metadata" in out.metrics["fusion_gain/accuracy"].note


def test_field_texts_paper_prompt():
    ds = SentimentDataset("t", ("a", "b"), [None, None, None], np.array([0, 1, 0]),
                          text={"caption": ["c0", None, None], "scene": ["beach", "forest", None]},
                          objects=[("dog", "ball"), None, None])
    texts = field_texts(ds, {"p": PAPER_PROMPT, "c": "{caption}"})
    assert texts["p"][0] == ("the scene or background of image is beach, and the image contains the "
                             "following objects: dog, ball, ")
    assert texts["p"][1] == ("the scene or background of image is forest, and the image contains the "
                             "following objects: ")
    assert texts["p"][2] is None and texts["c"] == ["c0", None, None]
    with pytest.raises(ValueError, match="protocol.fields.x"):
        field_texts(ds, {"x": "{mood}"})


def test_bad_protocol_is_refused():
    ds = _tiny_dataset([0, 1] * 5)
    with pytest.raises(ValueError, match="protocol.protocols"):
        evaluate(_request(ds, RandomBackend(dim=8), protocols=["finetune"]))
    with pytest.raises(ValueError, match="split_fractions"):
        evaluate(_request(ds, RandomBackend(dim=8), split_fractions=[0.5, 0.5]))


# ----------------------------------------------------------------------------- registration, YAMLs
def test_hooks_and_task_files(tmp_path, monkeypatch):
    from ctxbench.plugin_host import load_plugins
    from ctxbench.task_config import parse_task
    host = load_plugins(entry_points=False)
    assert "metadata_sentiment" in host.families
    for loader in ("sentiment_folders", "sentiment_manifest", "sentiment_hf", "synthetic_sentiment"):
        assert loader in host.loaders
    assert {"sentiment.macro_F1", "sentiment.weighted_F1", "sentiment.F1_positive"} <= set(host.metrics)
    assert not host.metrics.get("sentiment.kl_divergence").higher_is_better
    assert host.metrics.get("sentiment.accuracy").higher_is_better
    assert not [f for f in host.failures if "metadata_sentiment" in f.plugin]
    monkeypatch.setenv("CTXBENCH_DATA", str(tmp_path / "empty"))
    files = sorted(TASKS.glob("*.yaml"))
    names = {f.stem for f in files}
    assert {"metadata_sentiment_synthetic", "metadata_sentiment_fi", "metadata_sentiment_twitter_ldl",
            "metadata_sentiment_artphoto"} <= names
    for f in files:
        spec = parse_task(f, host.families, host.loaders)
        loader = host.loaders.get(spec.loader)
        ctx = LoadContext(spec.name, f, seed=0, limit=None)
        if spec.loader == "synthetic_sentiment":
            ds = loader.load(spec.options, ctx)
            assert len(ds) >= 200
            assert "all" in spec.all_groups
        else:
            with pytest.raises(DataNotFound) as info:
                loader.load(spec.options, ctx)
            assert str(tmp_path / "empty") in str(info.value)


def test_too_few_items_for_a_split_is_explained():
    ds = _tiny_dataset([0, 1, 0, 1])
    with pytest.raises(ValueError, match="split is empty.*at least 3 items per class"):
        evaluate(_request(ds, RandomBackend(dim=8), protocols=["image_probe"]))


# ----------------------------------------------------------------------------- protocol schema
def test_check_protocol_names_the_offending_option():
    from ctxbench.errors import ProtocolError
    from ctxbench.families.metadata_sentiment.protocol import check_protocol
    check_protocol(dict(PROTOCOL_DEFAULTS))
    bad = {"protocols": ["zero_shot", "sideways"], "templates": ["no placeholder"],
           "class_prompts": {"a": 3}, "zero_shot_on": "some", "fields": {"c": "{}"},
           "split_fractions": [0.5, 0.5], "val_fraction_of_train": 1.5, "epochs": 0,
           "patience": 2.5, "batch_size": "big", "linear_lr": -1, "fusion_lr": 0,
           "weight_decays": [], "fusion_dim": 130, "dropout": 1.0, "bootstrap_resamples": True,
           "zero_shot_logit_scale": "x"}
    for option, value in bad.items():
        with pytest.raises(ProtocolError) as info:
            check_protocol({**PROTOCOL_DEFAULTS, option: value})
        expected = "fields.c" if option == "fields" else option
        assert info.value.option == expected, (option, str(info.value))
        assert str(info.value).startswith(f"protocol.{expected}:")


def test_metric_names_cover_every_metric_the_evaluator_emits():
    """The embedded task's protocol (random backend, fewer epochs): every emitted
    name is listed by metric_names, and what is listed but not emitted is only
    what this dataset cannot give (KL without distributions, other class sets)."""
    import yaml
    from ctxbench.families.metadata_sentiment.protocol import POLARITY_CLASSES, metric_names
    doc = yaml.safe_load((TASKS / "metadata_sentiment_synthetic.yaml").read_text())
    protocol = {**PROTOCOL_DEFAULTS, **doc["protocol"], "epochs": 3, "bootstrap_resamples": 50}
    ds = synth.build(**{**doc["dataset"]["options"], "n_per_class": 6})
    out = evaluate(EvalRequest(task=None, dataset=ds, encoder=CachedEncoder(RandomBackend(dim=16), None,
                                                                            progress=False),
                               protocol=protocol, seed=0))
    names = set(metric_names(protocol))
    assert set(out.metrics) <= names, sorted(set(out.metrics) - names)
    left = names - set(out.metrics)
    assert all(n.endswith(("/kl", "/F1_positive")) or n.rsplit("/", 1)[-1] in POLARITY_CLASSES
               for n in left), sorted(left)
    for metric in doc["metrics"]:
        assert metric in out.metrics


# (the light-import check of this family's hooks is in tests/core/test_family_contract.py)


def test_binary_task_reports_macro_and_positive_f1():
    from ctxbench.families.metadata_sentiment.metrics import f1_positive, macro_f1
    from ctxbench.families.metadata_sentiment.protocol import metric_names
    ds = synth.build(n_per_class=6, seed=2, polarity=True)
    protocol = {**PROTOCOL_DEFAULTS, "epochs": 3, "bootstrap_resamples": 50}
    out = evaluate(EvalRequest(task=None, dataset=ds, encoder=CachedEncoder(RandomBackend(dim=16), None,
                                                                            progress=False),
                               protocol=protocol, seed=0))
    assert set(out.metrics) <= set(metric_names(protocol))
    for proto in ("zero_shot", "image_probe", "fusion_probe"):
        (tn, fp), (fn, tp) = out.details["confusion"][proto]
        y_true = [0] * (tn + fp) + [1] * (fn + tp)
        y_pred = [0] * tn + [1] * fp + [0] * fn + [1] * tp
        assert out.metrics[f"{proto}/F1_positive"].value == pytest.approx(f1_positive(y_true, y_pred))
        assert out.metrics[f"{proto}/macro_F1"].value == pytest.approx(macro_f1(y_true, y_pred, 2))
        assert f"{proto}/macro_f1" not in out.metrics
    assert "fusion_gain/F1_positive" in out.metrics
    assert "F1_positive" in out.tables["summary"][0]
