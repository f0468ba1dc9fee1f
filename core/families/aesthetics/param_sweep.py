"""Parameter sweeps (loader ``param_sweep``): generated images labelled with a parameter.

The CFG-scale experiment of Sugiura & Yamauchi (section 4.2): images generated at
several values of one generation parameter per prompt, read as
``<root>/<prompt_id>/<param>/<image>.png`` (a parameter folder may carry a prefix:
``7``, ``cfg7``, ``cfg_7.5``) or from a manifest CSV with columns
``path,prompt_id,param[,prompt]`` (paths relative to root). ``root`` is taken against
the task file (:func:`ctxbench.io.paths.option_path`); every image, listed or found,
must resolve inside it (:func:`ctxbench.io.paths.contained`: a symlink leading out is
refused).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import DataNotFound, DatasetFormatError
from ...inputs import ImageRef
from ...io.paths import contained, option_path
from .data import MIN_PER_CELL, DataReport, ParamSweepDataset, limit_items

SWEEP_INSTRUCTIONS = (
    "Generate the images yourself (the paper: Stable Diffusion 'Realistic Vision V6.0 B1', "
    "512x512 px, 30 sampling steps, CFG scale 1, 3, 5, 7, 9, 100 images each per prompt) and "
    "save them as <root>/<prompt_id>/<cfg>/<n>.png (e.g. nature/7/0001.png), or list them in "
    "a manifest CSV with columns path,prompt_id,param[,prompt] (paths relative to root). "
    "Prompt texts come from the manifest's 'prompt' column, the 'prompts' option, or the "
    "prompt_id with '_' read as a space.")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_PARAM_RE = re.compile(r"^[A-Za-z_\-]*?(-?\d+(?:\.\d+)?)$")


Entry = tuple[Path, str, float]          # image path, prompt id, parameter value


def _manifest_entries(root: Path, manifest: str, prompts: dict[str, str],
                      report: DataReport) -> list[Entry]:
    """Rows of the manifest CSV; prompt texts of its ``prompt`` column go into ``prompts``."""
    mpath = contained(root, manifest, "dataset.options.manifest")
    if not mpath.is_file():
        raise DataNotFound(f"manifest {mpath} not found. {SWEEP_INSTRUCTIONS}")
    entries: list[Entry] = []
    with mpath.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "prompt_id", "param"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetFormatError(f"{mpath}, line 1: header lacks column(s) {sorted(missing)} "
                                     f"(expected path,prompt_id,param[,prompt])")
        for row in reader:
            line = reader.line_num
            try:
                param = float(row["param"])
                if not np.isfinite(param):
                    raise ValueError
            except (TypeError, ValueError):
                report.add(mpath, line, "bad_param", f"param {row.get('param')!r} is not a number",
                           "row dropped")
                continue
            if not (row.get("path") or "").strip() or not (row.get("prompt_id") or "").strip():
                report.add(mpath, line, "empty_field", "empty path or prompt_id", "row dropped")
                continue
            path = contained(root, row["path"].strip(), f"{mpath}, line {line}")
            if not path.is_file():
                report.add(mpath, line, "missing_image", f"file {path} not found", "row dropped")
                continue
            pid = row["prompt_id"].strip()
            if row.get("prompt") and pid not in prompts:
                prompts[pid] = row["prompt"].strip()
            entries.append((path, pid, param))
    return entries


def _folder_entries(root: Path, report: DataReport) -> list[Entry]:
    """Images of the ``<root>/<prompt_id>/<param>/<image>`` layout."""
    entries: list[Entry] = []
    for pdir in sorted(p for p in root.iterdir() if p.is_dir()):
        for vdir in sorted(v for v in pdir.iterdir() if v.is_dir()):
            match = _PARAM_RE.match(vdir.name)
            if not match:
                report.add(vdir, None, "bad_param_dir",
                           f"folder name {vdir.name!r} is not a parameter value (e.g. 7, cfg7, "
                           f"cfg_7.5)", "folder skipped")
                continue
            for f in sorted(vdir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file():
                    path = contained(root, f.relative_to(root).as_posix(), str(f))
                    entries.append((path, pdir.name, float(match.group(1))))
    return entries


def load_param_sweep(options: dict[str, Any], ctx) -> ParamSweepDataset:
    """Loader ``param_sweep`` (module docstring; options: :data:`.options.PARAM_SWEEP_OPTIONS`)."""
    if "root" not in options:
        raise DatasetFormatError(f"{ctx.task_file}: dataset.options.root is required")
    root = option_path(options, "root", ctx)
    if not root.is_dir():
        raise DataNotFound(f"parameter-sweep image folder {root} does not exist. {SWEEP_INSTRUCTIONS}")
    report = DataReport(strict=bool(options.get("strict", False)))
    prompts: dict[str, str] = {str(k): str(v) for k, v in (options.get("prompts") or {}).items()}
    if options.get("manifest"):
        entries = _manifest_entries(root, options["manifest"], prompts, report)
    else:
        entries = _folder_entries(root, report)
    if not entries:
        raise DatasetFormatError(f"{root}: no images found ({report.n_issues} problems: "
                                 f"{report.issues[:3]}). {SWEEP_INSTRUCTIONS}")
    keep, limited = limit_items([f"{e[1]}/{e[2]:g}" for e in entries], ctx.limit, ctx.seed,
                                MIN_PER_CELL)
    if limited:
        report.filter(f"--limit {ctx.limit}: images not sampled", len(entries) - len(keep))
    entries = [entries[i] for i in keep]
    pids = sorted({e[1] for e in entries})
    for pid in pids:
        prompts.setdefault(pid, pid.replace("_", " "))
    return ParamSweepDataset(
        name=f"sweep:{root.name}", refs=[ImageRef.from_path(e[0]) for e in entries],
        prompt_ids=[e[1] for e in entries], params=[e[2] for e in entries],
        prompts={p: prompts[p] for p in pids}, param_name=str(options.get("param_name", "param")),
        report=report, meta={"root": str(root), **({"limit": limited} if limited else {})})
