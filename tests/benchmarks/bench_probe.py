"""Probe training time (run on demand: `pytest -m benchmark tests/benchmarks/bench_probe.py -s`).

Linear (image-only) and relevance-fusion probes of the metadata_sentiment family on
random cached embeddings: 10,000 training items, D = 512, 8 classes, image + 3
metadata fields (one field missing for 20% of items). Reports seconds per epoch per
10k items and the time of one full default fit (early stopping on validation,
one weight decay). No speed is asserted beyond a sanity bound far from the target.
"""

import time

import numpy as np
import pytest
import torch
from torch.nn.functional import normalize

from ctxbench.families.metadata_sentiment.heads import LinearHead, RelevanceFusionHead
from ctxbench.families.metadata_sentiment.training import fit_probe, standardise
from ctxbench.probe import stratified_split

pytestmark = pytest.mark.benchmark

N_TRAIN, D, K, FIELDS = 10_000, 512, 8, 3


def _data(seed=0):
    n = int(N_TRAIN / 0.6) + 1          # 60/20/20 split -> 10k training items
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    protos = rng.standard_normal((K, D)).astype(np.float32)
    x = rng.standard_normal((n, 1 + FIELDS, D)).astype(np.float32)
    x[:, 0] += 0.2 * protos[y]
    x[:, 1] += 0.5 * protos[y]
    x = normalize(torch.from_numpy(x), dim=-1)
    mask = torch.ones(n, 1 + FIELDS, dtype=torch.bool)
    mask[torch.from_numpy(rng.random(n) < 0.2), 2] = False
    splits = stratified_split(y, (0.6, 0.2, 0.2), seed)
    return x, mask, y, splits


def _fit(kind, x, mask, y, splits, epochs, patience, device):
    targets = torch.eye(K)[torch.from_numpy(y)]
    common = dict(weight_decays=[1e-4], epochs=epochs, patience=patience, batch_size=256, seed=0,
                  device=device)
    if kind == "linear":
        xi = standardise(x[:, 0], splits["train"])
        make, inputs, lr = (lambda: LinearHead(D, K)), [xi], 1e-2
    else:
        xs = standardise(x, splits["train"], mask)
        make, inputs, lr = (lambda: RelevanceFusionHead(D, 1 + FIELDS, K)), [xs, mask], 1e-3
    t0 = time.perf_counter()
    fit = fit_probe(make, inputs, targets, splits["train"], splits["val"], y[splits["val"]], lr=lr, **common)
    return time.perf_counter() - t0, fit


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["linear", "fusion"])
def test_probe_training_time_per_10k(kind, device):
    x, mask, y, splits = _data()
    n_train = len(splits["train"])
    _fit(kind, x, mask, y, splits, 1, 1, device)                      # warm-up (lazy imports)
    seconds, _ = _fit(kind, x, mask, y, splits, 5, 100, device)
    per_epoch = seconds / 5 * 10_000 / n_train
    full, fit = _fit(kind, x, mask, y, splits, 100, 10, device)
    print(f"\n[bench_probe] {kind} on {device}: {per_epoch:.3f} s/epoch per 10k items; full default "
          f"fit {full:.2f} s for {n_train} train items (best epoch {fit.best_epoch} of "
          f"{fit.epochs_run} run; val acc {fit.best_val:.3f}; "
          f"CPU threads {torch.get_num_threads()})")
    assert per_epoch < 60 and fit.best_val > 0.5
