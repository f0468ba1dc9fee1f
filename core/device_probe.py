"""``--device auto`` / ``cpu`` answered without importing torch where the answer is certain.

Importing torch costs ~2 s, more than a whole warm rerun whose evaluations come from
the cache (cell_memo.py). ``cpu`` needs no torch at all. ``auto`` is ``cpu`` for sure on
Linux when no CUDA driver library (``libcuda.so.1``) can be loaded and the installed
torch is not a ROCm build: torch's CUDA runtime loads that same library, so
``torch.cuda.is_available()`` is False there, and MPS exists only on macOS. In every
other case (a driver present, ROCm, macOS, Windows, an explicit ``cuda``/``mps``) the
question goes to :func:`ctxbench.device.resolve_device`, which asks torch.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import sys
from pathlib import Path

from .device import check_device_name, resolve_device

_HIP = re.compile(r"^hip\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


def _torch_is_rocm_build() -> bool | None:
    """From ``torch/version.py`` without importing torch; None when it cannot tell."""
    try:
        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.submodule_search_locations:
            return None
        text = (Path(list(spec.submodule_search_locations)[0]) / "version.py").read_text("utf-8")
    except (ImportError, ValueError, OSError):
        return None
    match = _HIP.search(text)
    return None if match is None else match.group(1) != "None"


def no_accelerator_possible() -> bool:
    """True only when torch certainly sees neither CUDA, ROCm nor MPS (module docstring)."""
    if not sys.platform.startswith("linux"):
        return False
    if _torch_is_rocm_build() is not False:
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return True
    return False


def resolve_run_device(requested: str | None) -> str:
    """:func:`ctxbench.device.resolve_device`, without torch for ``cpu`` and for ``auto``
    on a machine that certainly has no accelerator."""
    if requested is not None:
        check_device_name(requested)
    if requested == "cpu" or (requested in (None, "auto") and no_accelerator_possible()):
        return "cpu"
    return resolve_device(requested)
