"""Task definitions: YAML files, safely loaded and validated against a schema.

Schema (a task file; files whose name starts with ``_`` are include-only)::

    task: context_retrieval_synthetic   # required, [a-z0-9_.-]+, unique
    family: context_retrieval           # required, a registered family
    version: 1                          # required, int: bump when results change
    description: ...                    # optional
    include: [_defaults.yaml]           # optional: files merged underneath (deep merge)
    dataset:                            # required
      loader: synthetic_context_retrieval   # required, a registered loader
      options: {...}                    # optional, loader-specific; ${ENV} expanded
    protocol: {...}                     # optional, keys from the family's defaults
    metrics: [..]                       # optional: headline metrics (leaderboard columns)
    groups: [..]                        # optional: extra groups ("all" and the
                                        # family name are implicit)
    depends_on: {scorer: ava}           # optional: role -> another task this one
                                        # needs (its dataset and protocol reach the
                                        # evaluator; its hash is folded into this one's)

``${VAR}`` and ``${VAR:-default}`` are expanded in every string under ``dataset``
(e.g. ``${CTXBENCH_DATA:-~/ctxbench-data}/epic100``); ``~`` is expanded too.
The task hash is computed on the merged document *before* expansion, so the
same task on another machine's data root has the same hash.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ProtocolError, TaskConfigError
from .name_registry import close_matches

TOP_LEVEL_FIELDS = {
    "task": "task name, e.g. my_task",
    "family": "the task family (ctxbench list tasks shows families)",
    "version": "integer version of the task definition",
    "description": "one-line description",
    "include": "relative path (or list) of YAML defaults to merge underneath",
    "dataset": "mapping with 'loader' and 'options'",
    "protocol": "family-specific evaluation options",
    "metrics": "list of headline metric names",
    "groups": "list of extra group names",
    "depends_on": "mapping role -> task name of tasks this one needs (e.g. scorer: ava)",
}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class TaskConfig:
    name: str
    family: str
    version: int
    description: str
    loader: str
    options: dict[str, Any]
    protocol: dict[str, Any]
    metrics: list[str]
    groups: list[str]
    path: Path
    hash: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    depends_on: dict[str, str] = field(default_factory=dict)          # role -> task name
    dependencies: dict[str, "TaskConfig"] = field(default_factory=dict)  # filled by the catalog

    @property
    def all_groups(self) -> list[str]:
        return ["all", self.family, *[g for g in self.groups if g not in ("all", self.family)]]


def _line_of(node: yaml.Node | None, path: list[str]) -> int | None:
    """1-based line of the value at ``path`` in a composed YAML node tree."""
    for key in path:
        if not isinstance(node, yaml.MappingNode):
            return None
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                node = v
                break
        else:
            return None
    return node.start_mark.line + 1 if node is not None else None


MAX_TASK_FILE_BYTES = 1 << 20     # a task file is a few hundred bytes; refuse megabytes
MAX_ALIASES = 64                  # YAML anchors/aliases: enough for shared defaults
MAX_EXPANDED_NODES = 100_000      # nodes after alias expansion ("billion laughs" bound)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:
                continue  # unhashable key: construct_mapping reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {seen[key]})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def _count_aliases(text: str) -> int:
    return sum(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader))


def _expanded_size_ok(value: Any, budget: int = MAX_EXPANDED_NODES) -> bool:
    """Whether ``value`` has at most ``budget`` nodes once aliases are expanded."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > budget:
            return False
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _read_yaml(path: Path) -> tuple[dict[str, Any], yaml.Node | None]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TaskConfigError(path, None, "file not found") from None
    except OSError as exc:
        raise TaskConfigError(path, None, f"unreadable ({exc.strerror or exc})") from None
    if len(raw) > MAX_TASK_FILE_BYTES:
        raise TaskConfigError(path, None, f"file is {len(raw):,} bytes; a task file must be under "
                              f"{MAX_TASK_FILE_BYTES:,}", "keep data out of task files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TaskConfigError(path, None, f"not UTF-8 text (byte {exc.start})",
                              "save the file as UTF-8") from None
    try:
        if _count_aliases(text) > MAX_ALIASES:
            raise TaskConfigError(path, None, f"more than {MAX_ALIASES} YAML aliases",
                                  "write the values out; task files need few anchors")
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise TaskConfigError(path, None, f"invalid YAML{where}: {getattr(exc, 'problem', exc)}",
                              "fix the syntax (yaml.safe_load is used: no Python tags)") from None
    if not _expanded_size_ok(data):
        raise TaskConfigError(path, None, f"expands to more than {MAX_EXPANDED_NODES:,} values "
                              "through YAML aliases", "write the values out")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TaskConfigError(path, None, "top level must be a mapping of fields")
    return data, node


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_includes(path: Path, data: dict[str, Any], seen: tuple[Path, ...]) -> dict[str, Any]:
    include = data.pop("include", None)
    if include is None:
        return data
    items = [include] if isinstance(include, str) else include
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise TaskConfigError(path, "include", "must be a path or a list of paths")
    merged: dict[str, Any] = {}
    for rel in items:
        inc_path = (path.parent / rel).resolve()
        if inc_path in seen:
            raise TaskConfigError(path, "include", f"include cycle through {rel}")
        inc_data, _ = _read_yaml(inc_path)
        merged = deep_merge(merged, _resolve_includes(inc_path, inc_data, seen + (inc_path,)))
    return deep_merge(merged, data)


def expand_env(value: Any, path: Path, field_name: str) -> Any:
    """Expand ${VAR} / ${VAR:-default} and ~ in every string inside ``value``."""
    if isinstance(value, dict):
        return {k: expand_env(v, path, f"{field_name}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, path, f"{field_name}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(match: re.Match) -> str:
        var, default = match.group(1), match.group(2)
        value = os.environ.get(var, "")
        if value:
            return value
        if default is not None:
            return default                      # as the shell: unset or empty -> default
        state = "is set but empty" if var in os.environ else "is not set"
        raise TaskConfigError(path, field_name, f"environment variable {var} {state}",
                              f"export {var}=... or write ${{{var}:-default}}")

    expanded = ENV_RE.sub(sub, value)
    if "${" in expanded:
        raise TaskConfigError(path, field_name, f"unexpanded '${{' in {value!r}",
                              "write ${VAR} or ${VAR:-plain default}; defaults cannot nest")
    return os.path.expanduser(expanded) if expanded.startswith("~") else expanded


def task_hash(doc: dict[str, Any]) -> str:
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def parse_task(path: str | Path, families=None, loaders=None) -> TaskConfig:
    """Load and validate one task file. ``families``/``loaders`` are registries used to
    check names (with close-match suggestions) and protocol/option keys."""
    path = Path(path)
    data, node = _read_yaml(path)
    doc = _resolve_includes(path, data, (path.resolve(),))

    def err(field_path: list[str], problem: str, fix: str | None = None):
        line = _line_of(node, field_path)
        name = ".".join(field_path) + (f" (line {line})" if line else "")
        return TaskConfigError(path, name, problem, fix)

    for key in doc:
        if key not in TOP_LEVEL_FIELDS:
            sugg = close_matches(key, list(TOP_LEVEL_FIELDS))
            raise err([key], "unknown field",
                      f"did you mean '{sugg[0]}'?" if sugg else
                      f"allowed fields: {', '.join(TOP_LEVEL_FIELDS)}")
    for req in ("task", "family", "version", "dataset"):
        if req not in doc:
            raise TaskConfigError(path, req, "required field is missing",
                                  f"add '{req}: ...' ({TOP_LEVEL_FIELDS[req]})")
    name = doc["task"]
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise err(["task"], f"invalid task name {name!r}",
                  "use lower-case letters, digits, '_', '.', '-'")
    if not isinstance(doc["version"], int) or isinstance(doc["version"], bool):
        raise err(["version"], "must be an integer", "e.g. 'version: 1'")
    dataset = doc["dataset"]
    if not isinstance(dataset, dict) or "loader" not in dataset:
        raise err(["dataset"], "must be a mapping with a 'loader' key",
                  "e.g. dataset: {loader: synthetic_context_retrieval, options: {}}")
    unknown = set(dataset) - {"loader", "options"}
    if unknown:
        raise err(["dataset", sorted(unknown)[0]], "unknown key", "allowed: loader, options")
    options = dataset.get("options") or {}
    if not isinstance(options, dict):
        raise err(["dataset", "options"], "must be a mapping")
    protocol = doc.get("protocol") or {}
    if not isinstance(protocol, dict):
        raise err(["protocol"], "must be a mapping")
    depends_on = doc.get("depends_on") or {}
    if not isinstance(depends_on, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in depends_on.items()):
        raise err(["depends_on"], "must be a mapping of role -> task name",
                  "e.g. 'depends_on: {scorer: aesthetics_synthetic}'")
    for list_field in ("metrics", "groups"):
        value = doc.get(list_field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise err([list_field], "must be a list of strings")

    family = doc["family"]
    if families is not None:
        if family not in families:
            sugg = close_matches(str(family), families.names())
            raise err(["family"], f"unknown family {family!r}",
                      f"did you mean '{sugg[0]}'?" if sugg else
                      f"known: {', '.join(families.names())}")
        fam = families.get(family)
        for key in protocol:
            if key not in fam.protocol_defaults:
                sugg = close_matches(key, list(fam.protocol_defaults))
                raise err(["protocol", key], f"unknown protocol option for family {family}",
                          f"did you mean '{sugg[0]}'?" if sugg else
                          f"allowed: {', '.join(fam.protocol_defaults) or 'none'}")
        merged = {**fam.protocol_defaults, **protocol}
        _check_family_protocol(fam, merged, err)
        _check_headline_metrics(fam, merged, doc.get("metrics", []), err)
    loader_name = dataset["loader"]
    if loaders is not None:
        _check_loader(loaders, loader_name, family, options, err)

    return TaskConfig(
        name=name, family=family, version=doc["version"],
        description=str(doc.get("description", "")), loader=loader_name,
        options=expand_env(options, path, "dataset.options"),
        protocol=dict(protocol), metrics=list(doc.get("metrics", [])),
        groups=list(doc.get("groups", [])), path=path, hash=task_hash(doc), raw=doc,
        depends_on=dict(depends_on))


def _check_loader(loaders, loader_name, family: str, options: dict[str, Any], err) -> None:
    """The loader exists, belongs to the task's family and accepts every option given."""
    if loader_name not in loaders:
        sugg = close_matches(str(loader_name), loaders.names())
        raise err(["dataset", "loader"], f"unknown loader {loader_name!r}",
                  f"did you mean '{sugg[0]}'?" if sugg else f"known: {', '.join(loaders.names())}")
    spec = loaders.get(loader_name)
    if spec.family != family:
        raise err(["dataset", "loader"],
                  f"loader {loader_name!r} is for family {spec.family!r}, not {family!r}")
    for key in options:
        if spec.options and key not in spec.options:
            sugg = close_matches(key, list(spec.options))
            raise err(["dataset", "options", key], f"unknown option for loader {loader_name}",
                      f"did you mean '{sugg[0]}'?" if sugg else f"allowed: {', '.join(spec.options)}")


def _check_family_protocol(fam, merged: dict[str, Any], err) -> None:
    """The family's own check of protocol values, its error placed on the option's line."""
    if fam.check_protocol is None:
        return
    try:
        fam.check_protocol(merged)
    except ProtocolError as exc:
        raise err(["protocol", exc.option], exc.problem, exc.fix) from None
    except (ValueError, TypeError, KeyError) as exc:
        raise err(["protocol"], f"{type(exc).__name__}: {exc}") from None


def _check_headline_metrics(fam, merged: dict[str, Any], metrics: list[str], err) -> None:
    """Every headline metric must be one the family emits under this protocol."""
    if not metrics or fam.metric_names is None:
        return
    known = list(dict.fromkeys(fam.metric_names(merged)))
    for metric in metrics:
        if metric not in known:
            sugg = close_matches(metric, known)
            raise err(["metrics"], f"unknown metric {metric!r} for family {fam.name} under "
                      f"this protocol", f"did you mean '{sugg[0]}'?" if sugg else
                      f"known: {', '.join(known[:20])}{' ...' if len(known) > 20 else ''}")
