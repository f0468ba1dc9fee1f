"""Test helper (not a test file): fake installed distributions with entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def make_dist(root: Path, dist_name: str, module: str, entry_points, module_src: str) -> Path:
    """Write a minimal installed distribution (module + dist-info with entry points
    in the `ctxbench` group) into ``root``; put ``root`` on sys.path to install it."""
    (root / f"{module}.py").write_text(module_src)
    info = root / f"{dist_name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ctxbench]\n" + "".join(
        f"{name} = {target}\n" for name, target in entry_points))
    return root


def run_cli(args: list[str], extra_path: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = f"{extra_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "ctxbench.cli", *args], capture_output=True,
                          text=True, env=env, timeout=kwargs.pop("timeout", 300), **kwargs)
