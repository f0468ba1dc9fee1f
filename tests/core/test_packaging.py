"""Every package folder is declared in pyproject.toml, so a non-editable install
ships every module; first-party plugins use the public entry-point group."""

import tomllib

import pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(cfg["packages"])
    mapping = cfg["package-dir"]
    found = set()
    for name, folder in mapping.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    assert found == declared, f"missing: {found - declared}, stale: {declared - found}"


def test_first_party_backends_use_the_public_entry_point_group():
    eps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["ctxbench"]
    for target in eps.values():
        assert target.startswith("ctxbench_plugins.")
        assert (ROOT / "plugins" / (target.split(".", 1)[1] + ".py")).exists()


def test_default_run_output_is_ignored_by_git():
    """`ctxbench run --task all` in a clone must leave `git status` clean."""
    import subprocess

    from ctxbench.cli import default_output_dir
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    target = default_output_dir("embedded") / "some_task" / "cell.json"
    proc = subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=root)
    assert proc.returncode == 0, f"{target} would be tracked; add its folder to .gitignore"
