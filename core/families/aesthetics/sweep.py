"""Parameter sweeps: does a scorer order images by a generation parameter?

The CFG experiment of Sugiura & Yamauchi (section 4.2): every image of a
:class:`~ctxbench.families.aesthetics.data.ParamSweepDataset` is scored and the
Spearman correlation between score and parameter is reported per prompt and averaged
over prompts. Scorers:

- ``zero_shot``: the prompt pair of :func:`~ctxbench.families.aesthetics.probes.zero_shot_scores`
  (no training data needed);
- probes (``scorer_probes``) trained exactly as in a quality task on the train/val
  splits of the task the sweep declares as its scorer, ``depends_on: {scorer:
  aesthetics_synthetic}`` in its YAML. The task catalog resolves that name (and
  folds the scorer task's hash into the sweep's), the runner loads its dataset and
  hands it over as ``req.dependencies["scorer"]`` with the scorer task's own
  protocol (its family defaults merged with its ``protocol:``), which sets the
  training options. The tag-aware probe uses the prompt text as the tag.

``scorer: auto`` runs zero-shot always and the probes when a scorer task is
declared; ``probe`` / ``zero_shot`` / ``both`` force a choice. ``agreement`` =
Spearman x the expected sign (``param_direction``: +1 for CFG scale, -1 for a
degradation level; ``auto`` takes the dataset's own, else +1).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn.functional import normalize

from ...errors import CtxbenchError, ProtocolError, TaskConfigError
from ...results import MetricValue
from ..contract import Dependency, EvalRequest, FamilyOutput
from . import metrics as Q
from .data import AestheticsDataset
from .features import encode, make_splits
from .probes import fit_probe, zero_shot_scores
from .protocol import FAMILY, PROTOCOL_DEFAULTS, SCORER_ROLE, check_protocol
from .scoring import json_number, metric_value


def sweep_rho(scores: np.ndarray, params: np.ndarray, groups: np.ndarray, n_resamples: int,
              seed: int) -> tuple[dict[str, float], float, np.ndarray]:
    """Spearman(score, param) per group, their mean, and bootstrap samples of the mean
    (items resampled within each group)."""
    rng = np.random.default_rng([seed, 0x5EE9])
    per, boots = {}, []
    for g in sorted(set(groups.tolist())):
        sel = np.flatnonzero(groups == g)
        per[g] = float(Q.srcc(scores[sel], params[sel]))
        idx = sel[rng.integers(0, len(sel), size=(n_resamples, len(sel)))]
        boots.append(np.asarray(Q.srcc(scores[idx], params[idx])))
    vals = np.array(list(per.values()))
    with np.errstate(all="ignore"):
        return per, float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan"), \
            np.nanmean(np.stack(boots), axis=0)


def scorer_dependency(req: EvalRequest) -> Dependency | None:
    """The trained scorer's task (``depends_on: {scorer: ...}``), checked; None when
    the sweep needs none (zero-shot only). Errors name the task file and the fix."""
    mode = req.protocol["scorer"]
    where = getattr(req.task, "path", "task")
    declared = (getattr(req.task, "depends_on", None) or {}).get(SCORER_ROLE)
    dep = req.dependencies.get(SCORER_ROLE)
    if mode == "zero_shot":
        return None
    if dep is None:
        if declared:
            raise CtxbenchError(
                f"{where}: depends_on.{SCORER_ROLE} names task {declared!r}, but the evaluator "
                f"received no dependency '{SCORER_ROLE}' (run the task through the ctxbench "
                f"runner, which loads it, or pass EvalRequest(dependencies={{'{SCORER_ROLE}': "
                f"Dependency(task, dataset, protocol)}}))")
        if mode == "auto":
            return None
        raise TaskConfigError(where, "depends_on", f"scorer: {mode} needs a task to train the "
                              f"probes on", f"add 'depends_on: {{{SCORER_ROLE}: "
                              f"aesthetics_synthetic}}' (or another aesthetics quality task) to "
                              f"{where}, or use scorer: zero_shot")
    name = getattr(dep.task, "name", "?")
    if getattr(dep.task, "family", FAMILY) != FAMILY or not isinstance(dep.dataset, AestheticsDataset):
        raise TaskConfigError(where, f"depends_on.{SCORER_ROLE}",
                              f"task {name!r} (family {getattr(dep.task, 'family', '?')!r}, "
                              f"dataset {type(dep.dataset).__name__}) is not an aesthetics "
                              f"quality task", "name a task with loader ava or "
                              "synthetic_aesthetics, e.g. aesthetics_synthetic")
    protocol = {**PROTOCOL_DEFAULTS, **dep.protocol}
    try:
        check_protocol(protocol)
    except ProtocolError as exc:
        raise TaskConfigError(getattr(dep.task, "path", name), f"protocol.{exc.option}",
                              exc.problem, exc.fix) from None
    return Dependency(dep.task, dep.dataset, protocol)


def probe_scores(req: EvalRequest, dep: Dependency, images: torch.Tensor
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Scores of the sweep images by each ``scorer_probes`` probe trained on ``dep``."""
    enc, ds, seed = req.encoder, req.dataset, req.seed
    train_ds, tp = dep.dataset, dep.protocol
    feats = encode(enc, train_ds, tp)
    splits = make_splits(train_ds, tp, seed)
    prompt_texts = {pid: str(tp["tag_template"]).format(tag=t) for pid, t in ds.prompts.items()}
    order = sorted(prompt_texts)
    prompt_emb = normalize(enc.texts([prompt_texts[k] for k in order]), dim=-1)
    position = {pid: i for i, pid in enumerate(order)}
    rows = torch.as_tensor([position[pid] for pid in ds.prompt_ids], dtype=torch.long)
    info = {"task": dep.task.name, "task_hash": dep.task.hash,
            "splits": {k: int(len(v)) for k, v in splits.items()},
            "prompt_tag_texts": prompt_texts, "selection": {}}
    scores = {}
    for kind in req.protocol["scorer_probes"]:
        fitted = fit_probe(kind, train_ds, feats, splits, tp, seed, req.device)
        with torch.no_grad():
            out, _ = fitted.model(images.to(req.device), prompt_emb[rows].to(req.device))
        scores[kind] = out.double().cpu().numpy()
        info["selection"][kind] = fitted.info
    return scores, info


def sweep_tables(ds, scores, per_prompt) -> dict[str, list[dict[str, Any]]]:
    """Spearman per prompt, and score mean/std per parameter value."""
    table = []
    for pid in sorted(ds.prompts):
        sel = ds.prompt_ids == pid
        row: dict[str, Any] = {"prompt_id": pid, "prompt": ds.prompts[pid], "n": int(sel.sum())}
        row.update({f"{k}/rho": json_number(per_prompt[k][pid]) for k in scores})
        table.append(row)
    by_param = []
    for value in np.unique(ds.params):
        sel = ds.params == value
        row = {ds.param_name: float(value), "n": int(sel.sum())}
        for k, s in scores.items():
            row[f"{k}/mean"] = float(s[sel].mean())
            row[f"{k}/std"] = float(s[sel].std())
        by_param.append(row)
    return {"per_prompt": table, "score_by_param": by_param}


def evaluate_sweep(req: EvalRequest) -> FamilyOutput:
    """Score every sweep image with each scorer; Spearman with the parameter."""
    p, ds, seed = req.protocol, req.dataset, req.seed
    images = normalize(req.encoder.images(ds.refs), dim=-1)
    scores: dict[str, np.ndarray] = {}
    details: dict[str, Any] = {"dataset": ds.name, "dataset_report": ds.report.to_json(),
                               "param_name": ds.param_name, "prompts": dict(ds.prompts)}
    mode = p["scorer"]
    dep = scorer_dependency(req)
    if mode in ("auto", "zero_shot", "both"):
        scores["zero_shot"] = zero_shot_scores(req.encoder, images, p)
        details["zero_shot_prompts"] = p["zero_shot_prompts"]
    if dep is not None and mode in ("auto", "probe", "both"):
        probe, details["scorer_task"] = probe_scores(req, dep, images)
        scores.update(probe)
    if not scores:
        raise TaskConfigError(req.task.path, "protocol.scorer", f"{mode!r} selected no scorer",
                              "declare depends_on: {scorer: <task>} or use scorer: zero_shot")
    direction = p["param_direction"]
    if direction == "auto":
        direction = int(ds.meta.get("expected_sign", 1))
    details["param_direction"] = direction
    metrics: dict[str, MetricValue] = {}
    per_prompt: dict[str, dict[str, float]] = {}
    n = len(ds)
    for kind, s in scores.items():
        per, mean, boot = sweep_rho(s, ds.params, ds.prompt_ids, int(p["n_resamples"]), seed)
        per_prompt[kind] = per
        note = (f"mean over {len(per)} prompts of Spearman(score, {ds.param_name}); CI: items "
                f"resampled within prompts")
        metrics[f"{kind}/rho"] = metric_value(mean, boot, n, note)
        metrics[f"{kind}/agreement"] = metric_value(
            direction * mean, direction * boot, n,
            f"{direction:+d} x {kind}/rho (expected direction: "
            f"{'higher' if direction > 0 else 'lower'} {ds.param_name} = better); 1 = perfect ordering")
    order = sorted(scores, key=lambda k: k == "zero_shot")     # trained scorers first
    headline = [f"{k}/agreement" for k in order] + [f"{k}/rho" for k in order]
    return FamilyOutput(metrics=metrics, headline=headline[:8],
                        tables=sweep_tables(ds, scores, per_prompt), details=details, n=n)
