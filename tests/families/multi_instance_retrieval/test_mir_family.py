"""The multi_instance_retrieval evaluator on the embedded kitchen clips: structure
proven by an oracle backend (mAP = nDCG = 1), chance by `random`; TTA, video
backends, the similarity artifact, the challenge export, and the task files."""

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ctxbench.io import safe_pickle
from ctxbench.backend import Capabilities
from ctxbench.encoder import CachedEncoder
from ctxbench.errors import CtxbenchError, DataNotFound
from ctxbench.families.multi_instance_retrieval.export import export_submission
from ctxbench.families.multi_instance_retrieval import evaluator as mir
from ctxbench.families.multi_instance_retrieval import tta
from ctxbench.families.multi_instance_retrieval.export import SIMILARITY_ARTIFACT
from ctxbench.families.multi_instance_retrieval.protocol import METRICS, PROTOCOL_DEFAULTS
from ctxbench.families.contract import EvalRequest
from ctxbench.inputs import ImageRef, pil_key
from ctxbench.families.multi_instance_retrieval.metrics import mir_map
from ctxbench.registrations import LoadContext
from ctxbench.families.multi_instance_retrieval import synthetic as kitchen
from ctxbench.synthetic_world import MOTIONS, SHAPES
from ctxbench_plugins.random_backend import RandomBackend

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dataset():
    return kitchen.build(n_clips=48, seed=0)


def run(backend, dataset, artifact_dir=None, **protocol):
    enc = CachedEncoder(backend, cache=None, progress=False)
    p = {**PROTOCOL_DEFAULTS, "n_frames": 4, "bootstrap_resamples": 300, **protocol}
    return mir.evaluate(EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=p,
                                    artifact_dir=artifact_dir)), enc


class KitchenOracle:
    """Knows the generator: recognises a frame by its pixels (-> the clip's verb and
    noun set) and a caption by its text (``kitchen.narration`` of every verb and noun
    tuple). A clip embeds as the one-hot of its (verb, noun set) among ``combos``; a
    caption as the official relevancy of each combo to the caption's classes, plus a
    padding coordinate that gives every caption the same norm. Cosine similarity is
    then proportional to the relevancy itself."""

    capabilities = Capabilities(normalized=False)

    def __init__(self, dataset, n_frames=4):
        self.combo_of_pixels = {}
        combos = []
        for clip, verb, nouns in zip(dataset.clips, dataset.meta["verbs"], dataset.meta["nouns"]):
            combo = (verb, frozenset(nouns))
            combos.append(combo)
            for ref in clip.frames(n_frames):
                self.combo_of_pixels[pil_key(ref.load())] = combo
        self.combos = sorted(set(combos), key=lambda c: (c[0], sorted(c[1])))
        self.index = {c: i for i, c in enumerate(self.combos)}
        self.classes_of_text = {}
        for verb in MOTIONS:
            for a in SHAPES:
                for b in [None, *SHAPES]:
                    nouns = (a,) if b is None else (a, b)
                    self.classes_of_text[kitchen.narration(verb, nouns)] = (verb, frozenset(nouns))

    def fingerprint(self):
        return "kitchen-oracle"

    def encode_images(self, images, contexts):
        out = torch.zeros(len(images), len(self.combos) + 1)
        for i, image in enumerate(images):
            out[i, self.index[self.combo_of_pixels[pil_key(image)]]] = 1.0
        return out

    def encode_texts(self, texts, contexts):
        rows = []
        for text in texts:
            verb, nouns = self.classes_of_text[text]
            rel = [((1.0 if verb == v else 0.0) + len(nouns & n) / len(nouns | n)) / 2
                   for v, n in self.combos]
            pad = math.sqrt(len(self.combos) - sum(r * r for r in rel))
            rows.append(rel + [pad])
        return torch.tensor(rows)


# ----------------------------------------------------------------------------- dataset
def test_kitchen_dataset_structure(dataset):
    verbs, nouns = dataset.meta["verbs"], dataset.meta["nouns"]
    assert len(dataset.vis_ids) == 48 and len(set(dataset.captions)) == len(dataset.captions)
    assert len(dataset.captions) < 48                       # several clips share a caption
    first = {}
    for i, (v, n) in enumerate(zip(verbs, nouns)):
        first.setdefault(kitchen.narration(v, tuple(n)), i)
    assert dataset.captions == list(first)                  # first clip of each narration
    for i, (v, n) in enumerate(zip(verbs, nouns)):          # the official formula
        for j, t in enumerate(dataset.txt_ids):
            k = dataset.vis_ids.index(t)
            a, b = set(n), set(nouns[k])
            want = ((1.0 if v == verbs[k] else 0.0) + len(a & b) / len(a | b)) / 2
            assert dataset.relevancy[i, j] == want
    assert (dataset.relevancy == 1).any(axis=1).all() and (dataset.relevancy == 1).any(axis=0).all()
    assert not any(v == "spin" and n[0] in ("circle", "ring") for v, n in zip(verbs, nouns))
    frames = dataset.clips[0].frames(4)
    assert len({f.key for f in frames}) == 4 and frames[0].load().size == (64, 64)


def test_kitchen_dataset_is_deterministic_and_seeded():
    a, b, c = kitchen.build(n_clips=10, seed=1), kitchen.build(n_clips=10, seed=1), \
        kitchen.build(n_clips=10, seed=2)
    assert a.captions == b.captions and np.array_equal(a.relevancy, b.relevancy)
    assert [f.key for f in a.clips[3].frames(3)] == [f.key for f in b.clips[3].frames(3)]
    assert a.meta["nouns"] != c.meta["nouns"] or a.meta["verbs"] != c.meta["verbs"]


# ----------------------------------------------------------------------------- evaluator
def test_oracle_reaches_map_and_ndcg_of_one(dataset):
    out, _ = run(KitchenOracle(dataset), dataset)
    for name in METRICS:
        assert out.metrics[name].value == pytest.approx(1.0, abs=1e-9), name
    assert out.metrics["map_v2t"].n == 48 and out.metrics["map_t2v"].n == len(dataset.captions)
    assert out.headline == list(METRICS)


def test_random_backend_stays_near_chance(dataset):
    rng = np.random.default_rng(0)
    chance = np.mean([mir_map(rng.standard_normal(dataset.relevancy.shape), dataset.relevancy)["avg"]
                      for _ in range(30)])
    values = []
    for seed in range(3):
        out, _ = run(RandomBackend(seed=seed), dataset)
        values.append(out.metrics["map_avg"].value)
        lo, hi = out.metrics["map_avg"].ci
        assert lo <= out.metrics["map_avg"].value <= hi
        assert out.metrics["ndcg_avg"].value < 0.75
    assert np.mean(values) == pytest.approx(chance, abs=0.06)
    assert max(values) < 0.35


def test_queries_without_a_relevant_item(dataset):
    rel = dataset.relevancy.copy()
    rel[0][rel[0] == 1] = 0.5                    # clip 0 loses its exact matches
    broken = type(dataset)(dataset.name, dataset.vis_ids, dataset.txt_ids, dataset.captions, rel,
                           dataset.clips, dataset.meta)
    out, _ = run(RandomBackend(seed=0), broken)
    assert math.isnan(out.metrics["map_v2t"].value) and "official mean is NaN" in \
        out.metrics["map_v2t"].note
    assert math.isnan(out.metrics["map_avg"].value) and out.tables["directions"][0]["mAP"] is None
    assert not math.isnan(out.metrics["ndcg_v2t"].value)       # nDCG only needs R > 0
    out, _ = run(RandomBackend(seed=0), broken, nan_policy="omit")
    assert out.metrics["map_v2t"].n == 47 and "excluded" in out.metrics["map_v2t"].note
    kept = mir_map(np.delete(_sim(broken), 0, axis=0), np.delete(rel, 0, axis=0))
    assert out.metrics["map_v2t"].value == pytest.approx(kept["v2t"])


def _sim(ds):
    enc = CachedEncoder(RandomBackend(seed=0), cache=None, progress=False)
    vis = tta.clip_embeddings(enc, ds.clips, 4, [(False, 1.0)])
    txt = torch.nn.functional.normalize(enc.texts(ds.captions), dim=-1)
    return (vis @ txt.T).numpy()


def test_artifact_and_challenge_export(dataset, tmp_path):
    out, _ = run(RandomBackend(seed=0), dataset, artifact_dir=tmp_path / "cell.artifacts")
    npz = tmp_path / "cell.artifacts" / SIMILARITY_ARTIFACT
    assert out.details["similarity_artifact"] == str(npz)
    with np.load(npz, allow_pickle=False) as data:
        sim = data["sim"]
        assert sim.dtype == np.float32 and sim.shape == dataset.relevancy.shape
        assert list(data["txt_ids"]) == dataset.txt_ids
    assert mir_map(sim, dataset.relevancy)["avg"] == pytest.approx(out.metrics["map_avg"].value)
    with pytest.raises(CtxbenchError, match="not the official test set.*--force"):
        export_submission(tmp_path, tmp_path / "submission.pkl")     # synthetic: refused
    target = export_submission(tmp_path, tmp_path / "submission.pkl", sls_pt=2, sls_tl=3, sls_td=3,
                               force=True)
    sub = safe_pickle.load(target)                 # only numpy reconstructors inside
    assert set(sub) == {"version", "challenge", "sim_mat", "vis_ids", "txt_ids",
                        "sls_pt", "sls_tl", "sls_td"}
    assert sub["challenge"] == "multi_instance_retrieval" and sub["version"] == "0.1"
    assert np.array_equal(sub["sim_mat"], sim) and sub["sim_mat"].flags.writeable
    assert list(sub["vis_ids"]) == dataset.vis_ids and list(sub["txt_ids"]) == dataset.txt_ids
    assert (sub["sls_pt"], sub["sls_tl"], sub["sls_td"]) == (2, 3, 3)
    assert b"numpy._core" not in target.read_bytes()   # loadable by numpy 1.x too
    assert pickle.loads(target.read_bytes())["txt_ids"].dtype == object
    with pytest.raises(CtxbenchError, match="level 0..5"):
        export_submission(npz, tmp_path / "x.pkl", sls_td=7, force=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / SIMILARITY_ARTIFACT).write_bytes(npz.read_bytes())
    with pytest.raises(CtxbenchError, match="2 similarity files"):
        export_submission(tmp_path, tmp_path / "y.pkl")


def test_export_refuses_a_limited_run(tmp_path):
    """The result JSON beside the artifact says --limit: refused even at full size."""
    folder = tmp_path / "task" / "cell.artifacts"
    folder.mkdir(parents=True)
    np.savez(folder / SIMILARITY_ARTIFACT, sim=np.zeros((2, 3), np.float32),
             vis_ids=np.array(["a", "b"]), txt_ids=np.array(["x", "y", "z"]))
    (tmp_path / "task" / "cell.json").write_text('{"limit": 20}')
    with pytest.raises(CtxbenchError, match="--limit 20, a partial run"):
        export_submission(tmp_path, tmp_path / "s.pkl")
    assert export_submission(tmp_path, tmp_path / "s.pkl", force=True).is_file()


# ----------------------------------------------------------------------------- TTA, video
class MeanColourBackend:
    """Embeds an image as its mean colour and the mean colour of its left half."""

    capabilities = Capabilities()

    def fingerprint(self):
        return "mean-colour"

    def encode_images(self, images, contexts):
        rows = []
        for im in images:
            a = np.asarray(im, dtype=np.float32) / 255
            rows.append(np.concatenate([a.mean(axis=(0, 1)), a[:, : a.shape[1] // 2].mean(axis=(0, 1))]))
        return torch.from_numpy(np.stack(rows))

    def encode_texts(self, texts, contexts):
        return torch.ones(len(texts), 6)


def gradient_ref(seed):
    arr = np.zeros((16, 16, 3), dtype=np.uint8)
    arr[..., 0] = np.arange(16) * 15
    arr[..., 1] = seed * 40
    arr[4:12, 4:12, 2] = 200
    return ImageRef.from_pil(Image.fromarray(arr))


def test_tta_refs_have_their_own_keys_and_pixels():
    ref = gradient_ref(1)
    flipped = tta.transform_ref(ref, True, 1.0)
    cropped = tta.transform_ref(ref, False, 0.5)
    both = tta.transform_ref(ref, True, 0.5)
    assert tta.transform_ref(ref, False, 1.0) is ref
    assert len({ref.key, flipped.key, cropped.key, both.key}) == 4
    a, f = np.asarray(ref.load()), np.asarray(flipped.load())
    assert np.array_equal(f, a[:, ::-1])
    c = np.asarray(cropped.load())
    assert c.shape == a.shape and c[..., 2].min() >= 150      # only the central square remains
    assert tta.tta_transforms({"tta_hflip": True, "tta_scales": [1.0, 0.875]}) == \
        [(False, 1.0), (True, 1.0), (False, 0.875), (True, 0.875)]
    with pytest.raises(ValueError, match="tta_scales"):
        tta.tta_transforms({"tta_hflip": False, "tta_scales": [1.5]})


def test_tta_averages_normalised_clip_embeddings():
    class Clip:
        def __init__(self, refs):
            self.refs = refs

        def frames(self, n):
            return self.refs[:n]

    clips = [Clip([gradient_ref(0), gradient_ref(1)]), Clip([gradient_ref(2), gradient_ref(3)])]
    backend = MeanColourBackend()
    enc = CachedEncoder(backend, cache=None, progress=False)
    transforms = [(False, 1.0), (True, 1.0)]
    got = tta.clip_embeddings(enc, clips, 2, transforms)
    norm = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    want = []
    for clip in clips:
        total = 0
        for flip, scale in transforms:
            images = [tta.transform_ref(r, flip, scale).load() for r in clip.refs]
            frames = norm(backend.encode_images(images, [None, None]).numpy())
            total = total + norm(frames.mean(axis=0))
        want.append(norm(total))
    np.testing.assert_allclose(got.numpy(), np.stack(want), atol=1e-6)
    assert not np.allclose(got.numpy(), tta.clip_embeddings(enc, clips, 2, [(False, 1.0)]).numpy())


def test_video_backend_receives_whole_clips(dataset):
    class VideoBackend(RandomBackend):
        def __init__(self):
            super().__init__(seed=0)
            self.capabilities = Capabilities(video=True, normalized=True)
            self.clip_lengths = []

        def encode_videos(self, clips, contexts):
            self.clip_lengths += [len(c) for c in clips]
            return self.encode_images([c[0] for c in clips], contexts)

    backend = VideoBackend()
    out, _ = run(backend, dataset, n_frames=3)
    assert backend.clip_lengths == [3] * 48 and out.details["video_encoder"]


# ----------------------------------------------------------------------------- tasks
def test_task_files_are_valid_and_in_group_all(tmp_path, monkeypatch):
    from ctxbench.plugin_host import load_plugins
    from ctxbench.task_catalog import TaskCatalog

    monkeypatch.setenv("CTXBENCH_DATA", str(tmp_path))
    host = load_plugins(entry_points=False)
    assert "multi_instance_retrieval" in host.families
    registry = TaskCatalog([REPO / "tasks"], host.families, host.loaders)
    ours = [p for p in registry.invalid if p.parent.name == "multi_instance_retrieval"]
    assert not ours, {str(p): str(e) for p, e in registry.invalid.items()}
    groups = registry.groups()
    for name in ("epic100_mir", "multi_instance_retrieval_synthetic"):
        assert name in groups["all"] and name in groups["multi_instance_retrieval"]
    real = registry.tasks.get("epic100_mir")
    assert real.options["annotations_dir"] == f"{tmp_path}/epic100"
    ctx = LoadContext("epic100_mir", real.path)
    with pytest.raises(DataNotFound, match="epic-kitchens-100-annotations"):
        host.loaders.get("epic100_mir").load(real.options, ctx)
    synth = registry.tasks.get("multi_instance_retrieval_synthetic")
    ds = host.loaders.get(synth.loader).load(synth.options, LoadContext(synth.name, synth.path, limit=30))
    assert len(ds.vis_ids) <= 30 and (ds.relevancy == 1).any(axis=0).all()
