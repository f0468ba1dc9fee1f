"""Test helper (not a test file): a family, a loader and a backend that count what they
do, for the evaluation memo and progress tests (test_cell_memo.py, test_progress.py).

* loader ``memo_files``: ``<folder>/labels.json`` = ``[[image file, label], ...]``;
  ``keep_path: true`` also keeps the folder as a ``Path`` (a dataset the memo cannot
  digest, as one that reads files later would be);
* family ``memo_toy``: score = sum(label * first embedding dimension) * ``scale``;
  ``sleep`` seconds of "evaluator work"; ``artifact: true`` writes a file into the
  cell's artifact folder;
* backend ``pixels``: embedding = mean colour; ``delay`` seconds per batch.

``COUNTS`` counts evaluations, backend builds and images encoded; ``write_task``
writes the data and the task file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ctxbench.backend import BackendArg, BackendSpec, Capabilities
from ctxbench.hooks import hookimpl
from ctxbench.registrations import FamilySpec, LoaderSpec

FAMILY = "memo_toy"
TASK = "memo_toy_task"
PROTOCOL = {"scale": 1.0, "sleep": 0.0, "artifact": False}
COUNTS = {"evaluations": 0, "builds": 0, "images_encoded": 0}


def reset() -> None:
    for k in COUNTS:
        COUNTS[k] = 0


class PixelBackend:
    capabilities = Capabilities()

    def __init__(self, delay: float = 0.0):
        self.delay = delay

    def fingerprint(self) -> str:
        return "pixels:v1"

    def encode_images(self, images, contexts):
        import torch
        time.sleep(self.delay)
        COUNTS["images_encoded"] += len(images)
        rows = np.stack([np.asarray(im, dtype=np.float32).mean(axis=(0, 1)) for im in images])
        return torch.from_numpy(rows)

    def encode_texts(self, texts, contexts):
        import torch
        return torch.ones(len(texts), 3)


def make_pixels(device: str = "cpu", delay: float = 0.0) -> PixelBackend:
    COUNTS["builds"] += 1
    return PixelBackend(delay)


def evaluate(req):
    from ctxbench.families.contract import FamilyOutput
    from ctxbench.results import MetricValue

    COUNTS["evaluations"] += 1
    time.sleep(req.protocol["sleep"])
    emb = req.encoder.images(req.dataset["images"]).numpy()
    labels = np.asarray(req.dataset["labels"], dtype=np.float64)
    score = float((emb[:, 0] * labels).sum()) * req.protocol["scale"]
    details = {"labels": labels.tolist(), "first": emb[0].tolist()}
    if req.protocol["artifact"] and req.artifact_dir is not None:
        Path(req.artifact_dir).mkdir(parents=True, exist_ok=True)
        (Path(req.artifact_dir) / "scores.npy").write_bytes(emb.tobytes())
        details["artifact"] = str(Path(req.artifact_dir) / "scores.npy")
    return FamilyOutput(metrics={"score": MetricValue(score, (score - 1, score + 1), len(labels))},
                        headline=["score"],
                        tables={"rows": [{"i": i, "v": float(v)} for i, v in enumerate(emb[:, 0])]},
                        details=details, n=len(labels))


def load(options: dict, ctx):
    from ctxbench.inputs import ImageRef

    folder = Path(options["folder"])
    rows = json.loads((folder / "labels.json").read_text())
    out = {"images": [ImageRef.from_path(folder / name) for name, _ in rows],
           "labels": [label for _, label in rows]}
    if options.get("keep_path"):
        out["folder"] = folder
    return out


@hookimpl
def ctxbench_families():
    return [FamilySpec(FAMILY, evaluate, "counts its evaluations (tests)", protocol_defaults=PROTOCOL)]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("memo_files", load, FAMILY, "images and labels from a folder (tests)",
                       {"folder": "the data folder", "keep_path": "keep the folder as a Path"})]


@hookimpl
def ctxbench_backends():
    return [BackendSpec("pixels", make_pixels, "mean colour (tests)", 2,
                        args=(BackendArg("delay", float, 0.0),))]


COLOURS = [(200, 10, 10), (10, 200, 10), (10, 10, 200), (120, 120, 0)]


def write_image(path: Path, colour) -> None:
    Image.new("RGB", (6, 6), colour).save(path)


def write_task(root: Path, labels=(1, 2, 3, 4), protocol: dict | None = None,
               keep_path: bool = False) -> Path:
    """``root/data`` (images + labels.json) and ``root/tasks/memo_toy_task.yaml``;
    returns the tasks folder."""
    data, tasks = root / "data", root / "tasks"
    data.mkdir(parents=True, exist_ok=True)
    tasks.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (colour, label) in enumerate(zip(COLOURS, labels)):
        if not (data / f"{i}.png").exists():
            write_image(data / f"{i}.png", colour)
        rows.append([f"{i}.png", label])
    (data / "labels.json").write_text(json.dumps(rows))
    options = {"folder": str(data), **({"keep_path": True} if keep_path else {})}
    doc = {"task": TASK, "family": FAMILY, "version": 1,
           "dataset": {"loader": "memo_files", "options": options},
           "protocol": dict(protocol or {})}
    (tasks / f"{TASK}.yaml").write_text(json.dumps(doc))   # JSON is YAML
    return tasks
