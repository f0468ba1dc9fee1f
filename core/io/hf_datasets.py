"""Open a Hugging Face ``datasets`` source: a hub id, a local folder, or parquet files.

One function, :func:`open_dataset`, for every loader that reads ``datasets``:

* a folder written by ``save_to_disk`` -> ``load_from_disk``;
* a parquet file, or a folder of data files (parquet/csv/json/imagefolder) ->
  ``load_dataset`` on it, nothing fetched;
* ``owner/name`` -> ``load_dataset`` from the hub or its local cache; offline
  (:func:`hub_offline`) and not cached, it raises :class:`DataNotFound` at once
  with the command that fills the cache, instead of retrying the network.

The result is always a mapping ``split name -> datasets.Dataset`` (a single
un-split table is ``{"all": table}``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DataNotFound, DatasetFormatError

TRUE_STRINGS = ("1", "true", "yes", "on")


def hub_offline(datasets: bool = True) -> bool:
    """Whether the Hugging Face hub must not be contacted: ``HF_HUB_OFFLINE`` (and, for
    datasets, ``HF_DATASETS_OFFLINE``) set to a true value, or huggingface_hub says so.
    Model loaders pass ``datasets=False``: HF_DATASETS_OFFLINE says nothing about models."""
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if datasets else ("HF_HUB_OFFLINE",):
        if os.environ.get(var, "").strip().lower() in TRUE_STRINGS:
            return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except Exception:
        return False


def hub_dataset_cached(repo_id: str) -> bool:
    """Whether a hub dataset id has anything in the local hub or datasets cache."""
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or
                     Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub").expanduser()
    try:
        import datasets.config as ds_config
        ds_cache = Path(ds_config.HF_DATASETS_CACHE)
    except Exception:  # pragma: no cover - datasets is a dependency
        ds_cache = Path("~/.cache/huggingface/datasets").expanduser()
    flat = repo_id.replace("/", "___")
    candidates = [hub_cache / ("datasets--" + repo_id.replace("/", "--")),
                  ds_cache / flat, ds_cache / flat.lower()]
    return any(c.is_dir() and any(c.iterdir()) for c in candidates)


def looks_like_hub_id(value: str) -> bool:
    return value.count("/") <= 1 and not value.startswith((".", "~", "/")) and \
        not value.endswith(".parquet")


def _as_mapping(obj: Any) -> dict[str, Any]:
    import datasets
    if isinstance(obj, datasets.DatasetDict):
        return dict(obj)
    return {"all": obj}


def open_local(path: Path, config: str | None = None) -> dict[str, Any]:
    """A local ``save_to_disk`` folder, parquet file or data folder, as a split mapping."""
    import datasets

    if not path.exists():
        raise DataNotFound(f"Hugging Face dataset {path} not found; put the dataset there "
                           "(a save_to_disk folder, a parquet file or a folder of data files)")
    try:
        if path.is_file():
            if path.suffix != ".parquet":
                raise DatasetFormatError(f"{path}: a single file must be .parquet "
                                         "(or give a folder)")
            return _as_mapping(datasets.load_dataset("parquet", data_files=str(path)))
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _as_mapping(datasets.load_from_disk(str(path)))
        return _as_mapping(datasets.load_dataset(str(path), config))
    except (DataNotFound, DatasetFormatError):
        raise
    except FileNotFoundError as exc:
        raise DatasetFormatError(f"{path}: not a readable datasets folder ({exc})") from None


def open_dataset(source: str | os.PathLike, config: str | None = None,
                 revision: str | None = None, base: Path | None = None) -> tuple[dict, Path | None]:
    """Open ``source`` (see the module docstring). Returns ``(splits, local_root)``;
    ``local_root`` is the folder image paths may point into (None for hub data).

    A relative local path is taken against ``base`` (the task file's folder)."""
    text = str(source)
    local = Path(os.path.expanduser(text))
    if not local.is_absolute() and base is not None:
        local = base / local
    if local.exists() or not looks_like_hub_id(text):
        return open_local(local, config), local.resolve()
    return open_hub(text, config, revision), None


def open_hub(repo_id: str, config: str | None = None, revision: str | None = None) -> dict:
    """A hub dataset from the network or the local cache."""
    import datasets

    how = (f"Download it once with network access: `python -c \"import datasets; "
           f"datasets.load_dataset('{repo_id}'{', ' + repr(config) if config else ''})\"` (fills "
           "the cache), or save it to a folder and point the task's path option at that folder.")
    if hub_offline() and not hub_dataset_cached(repo_id):
        raise DataNotFound(f"Hugging Face dataset '{repo_id}' is not in the local cache and "
                           f"HF_HUB_OFFLINE=1 forbids downloading it. {how}")
    try:
        return _as_mapping(datasets.load_dataset(repo_id, config, revision=revision))
    except (FileNotFoundError, ConnectionError, OSError) as exc:
        raise DataNotFound(f"Hugging Face dataset '{repo_id}' could not be loaded ({exc}). "
                           f"{how}") from None
    except Exception as exc:
        if type(exc).__name__ in ("DatasetNotFoundError", "OfflineModeIsEnabled", "HfHubHTTPError",
                                  "LocalEntryNotFoundError"):
            raise DataNotFound(f"Hugging Face dataset '{repo_id}' could not be loaded ({exc}). "
                               f"{how}") from None
        raise
