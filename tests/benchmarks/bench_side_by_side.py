"""ctxbench next to a bare open_clip loop and CLIP_benchmark (issue 18), run on demand:

    pytest -m benchmark tests/benchmarks/bench_side_by_side.py -s

One image-text retrieval set is written to disk once (outside the timings): N
synthetic scenes of :mod:`ctxbench.synthetic_world` as PNG files plus a
``captions.csv`` (``image,caption``; up to 3 captions per image, made as the
``image_text_retrieval_synthetic`` task makes them, a caption text that another
image already has dropped so that no two captions tie exactly). Every side reads
those same files with the same model, the shipped ``toy_clip`` (open_clip, its
architecture JSON registered with ``open_clip.add_model_config``; its CNN image tower is
a timm model that ``ctxbench.toy_vision.register()`` registers), in fp32 on the
CPU, and computes text->image and image->text Recall@1/5. Each side is a fresh
Python process timed from launch to exit, as a user runs it; the sides alternate
within each round:

a. ``bare``: a script that loads the model with open_clip, reads and preprocesses
   every image, encodes images and captions (batches of ``BENCH_BATCH``,
   ``torch.inference_mode``) and computes the recalls with ``topk``: the floor,
   what one writes without a harness.
b. ``cold``: ``ctxbench run --task <task file> --backend toy_clip --device cpu
   --no-progress --rerun`` with an empty ``--cache-dir``: everything a first run
   does (task check, loading, hashing the image files, encoding, writing the
   embedding cache, evaluation with its bootstrap confidence intervals, result
   JSON and leaderboard). The task is an ``image_text_folder`` task file written
   next to the data.
c. ``warm``: the same command again (``--rerun``) with the cache filled: no
   encoding, the evaluation restored from the cache when nothing changed.
d. ``exists``: the same command without ``--rerun``: the results are present, the
   cell is skipped.
e. ``clip_benchmark``: CLIP_benchmark's own model loader
   (``clip_benchmark.models.load_clip``) and zero-shot retrieval
   (``clip_benchmark.metrics.zeroshot_retrieval.evaluate``, ``amp=False``: its
   default autocast would run the CPU in bfloat16) over a torch ``Dataset`` of the
   same files yielding ``(image, [captions])``, collated as its
   ``get_dataset_collate_fn('mscoco_captions')`` does, ``num_workers=0``. Only
   when ``clip_benchmark`` is installed (``pip install clip_benchmark``); else this
   part is skipped with a message and the others still run.

Printed per round, then as min/median seconds over the rounds: the wall time of
each side; for ``bare`` and ``clip_benchmark`` also their time after the imports
(``inner``: model load + data + encoding + recalls); then the ratios cold/bare (the
harness's whole cost on a first run), warm/cold and exists/cold (what a rerun
saves), clip_benchmark/bare. The recalls of bare, ctxbench (its result JSON's
``metrics``, the cold, warm and exists runs alike) and CLIP_benchmark must agree:
ctxbench counts exact ties as expected recall where ``topk`` picks one, so the
tolerance is 1e-6 plus (queries whose scores tie within 1e-6 near rank K) /
queries, and with float embeddings of distinct captions that count is 0.

Knobs (environment): ``BENCH_N`` (images, default 500), ``BENCH_ROUNDS`` (3),
``BENCH_BATCH`` (encoding batch of every side, 256, toy_clip's default). The
subprocesses get a bytecode cache (``PYTHONPYCACHEPREFIX``) even where
``PYTHONDONTWRITEBYTECODE`` is set, and one untimed run of each side on an 8-image
set fills it first. No speed is asserted (timed unit tests are flaky on shared
machines).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

N_IMAGES = int(os.environ.get("BENCH_N", "500"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BATCH = int(os.environ.get("BENCH_BATCH", "256"))
KS = (1, 5)
METRICS = tuple(f"{d}/R@{k}" for d in ("t2i", "i2t") for k in KS)
TOL = 1e-6

# ----------------------------------------------------------------------------- timed scripts
# Run as `python <script> DATA_DIR MODEL_JSON WEIGHTS BATCH`; the last stdout line is
# JSON: {"recalls": {"t2i/R@1": ...}, "inner": seconds after the imports, ...}.
_READ_CAPTIONS = '''
def read_captions(data):
    """(image files in order of first appearance, captions, image index of each caption)"""
    with open(data / "captions.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    files = list(dict.fromkeys(r["image"] for r in rows))
    index = {f: i for i, f in enumerate(files)}
    return files, [r["caption"] for r in rows], [index[r["image"]] for r in rows]


def load_image(data, name):
    with Image.open(data / "images" / name) as im:
        return im.convert("RGB")
'''

BARE_LOOP = '''
import csv, json, sys, time
from pathlib import Path

import ctxbench.toy_vision
ctxbench.toy_vision.register()  # toy_clip's CNN image tower, a timm model
import open_clip
import torch
import torch.nn.functional as F
from PIL import Image
''' + _READ_CAPTIONS + '''
t0 = time.perf_counter()
data, config, weights, batch = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ks = [int(k) for k in sys.argv[5].split(",")]
open_clip.add_model_config(config)
arch = Path(config).stem
model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights)
model.eval()
tokenizer = open_clip.get_tokenizer(arch)
files, texts, owner = read_captions(data)
owner = torch.tensor(owner)
with torch.inference_mode():
    img = torch.cat([model.encode_image(torch.stack([preprocess(load_image(data, f))
                                                     for f in files[i:i + batch]]))
                     for i in range(0, len(files), batch)])
    txt = torch.cat([model.encode_text(tokenizer(texts[i:i + batch]))
                     for i in range(0, len(texts), batch)])
    img, txt = F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)
    scores = txt @ img.T                                     # [captions, images]
    recalls, ties = {}, {}
    for direction, s in (("t2i", scores), ("i2t", scores.T)):
        top = s.topk(min(max(ks) + 1, s.shape[1]), dim=1).values
        ties[direction] = int(((top[:, :-1] - top[:, 1:]) <= 1e-6).any(1).sum())
    for k in ks:
        hit_img = (scores.topk(k, dim=1).indices == owner[:, None]).any(1)
        hit_txt = (owner[scores.T.topk(k, dim=1).indices] == torch.arange(len(files))[:, None]).any(1)
        recalls[f"t2i/R@{k}"] = hit_img.double().mean().item()
        recalls[f"i2t/R@{k}"] = hit_txt.double().mean().item()
print(json.dumps({"recalls": recalls, "inner": time.perf_counter() - t0, "ties": ties,
                  "queries": {"t2i": len(texts), "i2t": len(files)},
                  "threads": torch.get_num_threads()}))
'''

CLIP_BENCHMARK = '''
import csv, json, sys, time
from pathlib import Path

import ctxbench.toy_vision
ctxbench.toy_vision.register()  # toy_clip's CNN image tower, a timm model
import open_clip
from clip_benchmark.metrics import zeroshot_retrieval
from clip_benchmark.models import load_clip
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate
''' + _READ_CAPTIONS + '''

class CaptionedImages(Dataset):
    """(image, [its captions]), as CLIP_benchmark's retrieval datasets (CocoCaptions, flickr) yield."""

    def __init__(self, data, transform):
        self.data, self.transform = data, transform
        self.files, texts, owner = read_captions(data)
        self.captions = [[] for _ in self.files]
        for text, i in zip(texts, owner):
            self.captions[i].append(text)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return self.transform(load_image(self.data, self.files[i])), self.captions[i]


def image_captions_collate_fn(batch):
    # clip_benchmark/datasets/builder.py, what get_dataset_collate_fn("mscoco_captions")
    # returns (copied: importing builder pulls in every dataset module, and `requests`)
    transposed = list(zip(*batch))
    imgs = default_collate(transposed[0])
    texts = transposed[1]
    return imgs, texts


t0 = time.perf_counter()
data, config, weights, batch = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ks = [int(k) for k in sys.argv[5].split(",")]
open_clip.add_model_config(config)
model, transform, tokenizer = load_clip("open_clip", Path(config).stem, pretrained=weights,
                                        cache_dir=None, device="cpu")
model.eval()
loader = DataLoader(CaptionedImages(data, transform), batch_size=batch, shuffle=False,
                    num_workers=0, collate_fn=image_captions_collate_fn)
m = zeroshot_retrieval.evaluate(model, loader, tokenizer, recall_k_list=ks, device="cpu", amp=False)
recalls = {}
for k in ks:   # CLIP_benchmark names a direction by what is retrieved
    recalls[f"t2i/R@{k}"] = m[f"image_retrieval_recall@{k}"]
    recalls[f"i2t/R@{k}"] = m[f"text_retrieval_recall@{k}"]
print(json.dumps({"recalls": recalls, "inner": time.perf_counter() - t0}))
'''


# ----------------------------------------------------------------------------- helpers
def _summary(name: str, times: list[float]) -> str:
    return f"{name} min {min(times):.2f}s median {statistics.median(times):.2f}s"


def _ratio(name: str, num: list[float], den: list[float], fmt: str = ".2f", unit: str = "x") -> str:
    return (f"{name} {min(num) / min(den):{fmt}}{unit} (min) "
            f"{statistics.median(num) / statistics.median(den):{fmt}}{unit} (median)")


def _env(tmp: Path) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(tmp / "pycache"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _timed(cmd: list[str], env: dict) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return seconds, proc.stdout


def _model_files() -> tuple[Path, Path]:
    from ctxbench_plugins.toy_clip_backend import MODEL_DIR
    card = json.loads((MODEL_DIR / "card.json").read_text())
    return MODEL_DIR / "ctxbench-toy-clip.json", MODEL_DIR / card["weights"]["file"]


def _write_set(root: Path, n: int) -> tuple[Path, int]:
    """N scenes as ``root/data/images/*.png`` + ``root/data/captions.csv`` and the task
    file ``root/task.yaml``; returns (task file, number of captions)."""
    from ctxbench.families.image_text_retrieval.synthetic import build
    ds = build(n_images=n, captions_per_image=3, seed=0, size=64)
    images = root / "data" / "images"
    images.mkdir(parents=True)
    seen: set[str] = set()
    rows = []
    for text, i in zip(ds.captions, ds.caption_image):
        if text not in seen:   # the first caption of every image is unique (build's rule)
            seen.add(text)
            rows.append((f"{ds.image_ids[i]}.png", text))
    for image_id, ref in zip(ds.image_ids, ds.images):
        ref.load().save(images / f"{image_id}.png")
    with open(root / "data" / "captions.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    task = root / "task.yaml"
    task.write_text(f"""task: side_by_side_{n}
family: image_text_retrieval
version: 1
description: {n} synthetic scenes with up to 3 distinct captions each (bench_side_by_side)
dataset:
  loader: image_text_folder
  options:
    images: data/images
    captions: data/captions.csv
protocol:
  ks: [{', '.join(str(k) for k in KS)}]
""")
    return task, len(rows)


class Sides:
    """The command line of every side on one data set."""

    def __init__(self, tmp: Path, task: Path, env: dict, with_clip_benchmark: bool):
        config, weights = _model_files()
        self.tmp, self.task, self.env = tmp, task, env
        self.args = [str(task.parent / "data"), str(config), str(weights), str(BATCH),
                     ",".join(str(k) for k in KS)]
        self.scripts = {}
        for name, text in (("bare", BARE_LOOP), ("clip_benchmark", CLIP_BENCHMARK)):
            if name == "bare" or with_clip_benchmark:
                # side_*.py: a script named clip_benchmark.py would shadow the package
                self.scripts[name] = tmp / f"side_{name}.py"
                self.scripts[name].write_text(text)

    def script(self, name: str) -> tuple[float, dict]:
        seconds, out = _timed([sys.executable, str(self.scripts[name]), *self.args], self.env)
        return seconds, json.loads(out.strip().splitlines()[-1])

    def ctxbench(self, cache: Path, out: Path, rerun: bool) -> tuple[float, dict]:
        cmd = [sys.executable, "-m", "ctxbench.cli", "run", "--task", str(self.task),
               "--backend", "toy_clip", "--device", "cpu", "--batch-size", str(BATCH),
               "--no-progress", "--cache-dir", str(cache), "--output-dir", str(out)]
        seconds, _ = _timed(cmd + (["--rerun"] if rerun else []), self.env)
        docs = [p for p in out.rglob("*.json") if p.name != "manifest.json"]
        assert len(docs) == 1, f"expected one result JSON under {out}, found {docs}"
        doc = json.loads(docs[0].read_text())
        assert doc.get("status") == "ok", doc.get("status")
        return seconds, {m: doc["metrics"][m]["value"] for m in METRICS}


def _check_agree(name: str, got: dict, want: dict, tol: dict) -> None:
    bad = {m: (got[m], want[m]) for m in METRICS if abs(got[m] - want[m]) > tol[m.split("/")[0]]}
    assert not bad, f"{name} recalls differ from the bare loop's (got, bare): {bad}; tolerance {tol}"


# ----------------------------------------------------------------------------- the benchmark
def test_side_by_side(tmp_path):
    with_cb = importlib.util.find_spec("clip_benchmark") is not None
    env = _env(tmp_path)
    # untimed: fill the bytecode cache through every side on a small set
    warm_task, _ = _write_set(tmp_path / "warmup", 8)
    warmup = Sides(tmp_path / "warmup", warm_task, env, with_cb)
    warmup.script("bare")
    warmup.ctxbench(tmp_path / "warmup" / "cache", tmp_path / "warmup" / "out", rerun=True)
    if with_cb:
        warmup.script("clip_benchmark")

    task, n_captions = _write_set(tmp_path / "set", N_IMAGES)
    sides = Sides(tmp_path, task, env, with_cb)
    times: dict[str, list[float]] = {k: [] for k in
                                     ("bare", "bare inner", "cold", "warm", "exists",
                                      "clip_benchmark", "clip_benchmark inner")}
    for r in range(ROUNDS):
        cache, out = tmp_path / f"cache{r}", tmp_path / f"out{r}"
        seconds, bare = sides.script("bare")
        times["bare"].append(seconds)
        times["bare inner"].append(bare["inner"])
        want = bare["recalls"]
        tol = {d: TOL + bare["ties"][d] / bare["queries"][d] for d in ("t2i", "i2t")}
        for name, rerun in (("cold", True), ("warm", True), ("exists", False)):
            seconds, got = sides.ctxbench(cache, out, rerun)
            times[name].append(seconds)
            _check_agree(f"ctxbench {name}", got, want, tol)
        line = (f"[bench] round {r}: bare {times['bare'][-1]:.2f}s (inner {bare['inner']:.2f}s) "
                f"cold {times['cold'][-1]:.2f}s warm {times['warm'][-1]:.2f}s "
                f"exists {times['exists'][-1]:.2f}s")
        if with_cb:
            seconds, cb = sides.script("clip_benchmark")
            times["clip_benchmark"].append(seconds)
            times["clip_benchmark inner"].append(cb["inner"])
            _check_agree("CLIP_benchmark", cb["recalls"], want, tol)
            line += f" clip_benchmark {seconds:.2f}s (inner {cb['inner']:.2f}s)"
        print(line)
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)

    print(f"[bench] {N_IMAGES} images + {n_captions} captions (PNG + captions.csv), toy_clip fp32 "
          f"on cpu, batch {BATCH}, {bare['threads']} torch threads, {ROUNDS} rounds; "
          f"ties near rank K: {bare['ties']}")
    print("[bench] recalls (bare = ctxbench" + (" = CLIP_benchmark" if with_cb else "") + "): "
          + ", ".join(f"{m} {want[m]:.4f}" for m in METRICS))
    print("[bench] " + "; ".join(_summary(k, v) for k, v in times.items() if v))
    ratios = [_ratio("cold/bare", times["cold"], times["bare"]),
              _ratio("warm/cold", times["warm"], times["cold"], ".1%", ""),
              _ratio("exists/cold", times["exists"], times["cold"], ".1%", "")]
    if with_cb:
        ratios.append(_ratio("clip_benchmark/bare", times["clip_benchmark"], times["bare"]))
    print("[bench] " + "; ".join(ratios))
    if not with_cb:
        print("[bench] (e) CLIP_benchmark skipped: the package clip_benchmark is not installed in "
              f"{sys.prefix}; `pip install clip_benchmark` to time it and check its recalls")
