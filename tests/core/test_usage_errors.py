"""Usage and configuration errors: exit 2, one clear line naming the flag, file or
field, no traceback; checked in-process (fast). Each case is one member of a class:
a new flag or input that is silently accepted belongs in CASES."""

import pytest

from ctxbench.cli import main


def run(argv, capsys):
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


CASES = [
    (["run", "--limit", "0"], "--limit 0: must be a positive integer"),
    (["run", "--limit", "-1"], "--limit -1: must be a positive integer"),
    (["run", "--batch-size", "0"], "--batch-size 0: must be a positive integer"),
    (["run", "--batch-size", "-4"], "--batch-size -4: must be a positive integer"),
    (["run", "--seed", "-1"], "--seed -1: must be >= 0"),
    (["run", "--device", "gpu"], "--device 'gpu': unknown device"),
    (["run", "--cell-timeout", "0"], "--cell-timeout 0: must be a positive number"),
    (["run", "--task", ","], "selects no task"),
    (["run", "--backend", ","], "names no backend"),
    (["run", "--backend", "random", "--backend-arg", "=5"], "the key must not be empty"),
    (["run", "--backend", "random", "--backend-arg", "other:dim=5"], "is not among --backend"),
    (["run", "--task", "context_retreival_synthetic"], "Did you mean: context_retrieval_synthetic"),
    (["run", "--backend", "randon"], "Did you mean: random"),
    (["run", "--task", "missing_file.yaml"], "no such task file"),
    (["run", "--include-path", "/nonexistent/tasks"], "not a folder of task files"),
]


@pytest.mark.parametrize("argv,message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_usage_error_exit_2(argv, message, capsys, tmp_path):
    code, out, err = run(argv + ["--output-dir", str(tmp_path / "out")], capsys)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err


def test_unwritable_output_dir_is_a_usage_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = run(["run", "--output-dir", str(blocker / "sub")], capsys)
    assert code == 2 and "--output-dir" in err and "not writable" in err


def test_validate_missing_file_and_empty_folder(capsys, tmp_path):
    code, _, err = run(["validate", str(tmp_path / "missing.yaml")], capsys)
    assert code == 2 and "missing.yaml: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(["validate", str(tmp_path / "empty")], capsys)
    assert code == 2 and "no task files" in err


def test_validate_bad_files_are_listed_each_with_file_and_field(capsys, tmp_path):
    (tmp_path / "a.yaml").write_text("task: dup\nfamily: context_retrieval\nversion: 1\n"
                                     "dataset: {loader: synthetic_context_retrieval}\n")
    (tmp_path / "b.yaml").write_text("task: dup\nfamily: context_retrieval\nversion: 1\n"
                                     "dataset: {loader: synthetic_context_retrieval}\n")
    (tmp_path / "c.yaml").write_bytes(b"task: \xff\xfe\n")
    (tmp_path / "d.yaml").write_text("task: d\nfamily: [a, list]\nversion: 1\n"
                                     "dataset: {loader: x}\n")
    (tmp_path / "e.yaml").write_text("task: e\nfamily: context_retrieval\nversion: 1\n"
                                     "include: .\ndataset: {loader: synthetic_context_retrieval}\n")
    (tmp_path / "f.yaml").write_text("task: f\nfamily: context_retrieval\nversion: " + "9" * 5000
                                     + "\ndataset: {loader: synthetic_context_retrieval}\n")
    code, out, err = run(["validate", str(tmp_path)], capsys)
    assert code == 2 and "Traceback" not in out + err
    lines = [line for line in out.splitlines() if line.startswith("INVALID")]
    assert len(lines) == 6, out
    code, out, err = run(["list", "tasks", "--include-path", str(tmp_path)], capsys)
    assert code == 0 and "context_retrieval_synthetic" in out  # built-in tasks unaffected
    assert out.count("INVALID") == 6 and "Traceback" not in out + err
    assert sum("declared by 2 files" in line for line in lines) == 2
    assert any("c.yaml" in line for line in lines) and any("d.yaml" in line for line in lines)


@pytest.mark.parametrize("cmd", ["run", "list", "validate", "leaderboard", "report",
                                 "check-backend", "export-epic", "toy"])
def test_every_command_has_an_example_in_its_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "example: ctxbench" in capsys.readouterr().out


def _task(tmp_path, body: str, name="t.yaml"):
    path = tmp_path / name
    path.write_text("task: t\nfamily: context_retrieval\nversion: 1\n" + body)
    return path


@pytest.mark.parametrize("body,message", [
    ("dataset: {loader: synthetic_context_retrieval}\nversion: 2\n", "duplicate key 'version'"),
    ("dataset: {loader: synthetic_context_retrieval, options: {seed: 1, seed: 2}}\n",
     "duplicate key 'seed'"),
    ("dataset:\n  loader: synthetic_context_retrieval\n  options: {n_groups: '${A:-${B}}'}\n",
     "defaults cannot nest"),
    ("x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i > 1 else "*a"] * 9) + "]\n"
        for i in range(1, 9)) + "dataset: {loader: synthetic_context_retrieval}\n",
     "YAML aliases"),
])
def test_task_file_traps_are_clear_errors(tmp_path, body, message, capsys):
    path = _task(tmp_path, body)
    code, out, err = run(["validate", str(path)], capsys)
    assert code == 2 and message in out, out + err


def test_empty_environment_variable_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CTXBENCH_DATA", "")
    path = _task(tmp_path, "dataset:\n  loader: context_retrieval_json\n"
                           "  options: {path: '${CTXBENCH_DATA}/cr.json'}\n")
    code, out, _ = run(["validate", str(path)], capsys)
    assert code == 2 and "CTXBENCH_DATA is set but empty" in out


def test_leaderboard_marks_partial_results_and_defines_metric_directions(tmp_path):
    from ctxbench.leaderboard import render_markdown
    from ctxbench.name_registry import Registry
    from ctxbench.registrations import MetricSpec
    from ctxbench.results import CellResult, MetricValue

    def result(limit):
        return CellResult(cell_id=f"c{limit}", status="ok", task="t", task_hash="h",
                          task_version=1, family="fam", backend=f"b{limit}", backend_args={},
                          backend_label=f"b{limit}", fingerprint="f", seed=0, limit=limit,
                          metrics={"err": MetricValue(0.25)}, headline=["err"])
    specs = Registry("metric")
    specs.add("err", MetricSpec("err", abs, "mean absolute error", "fam", higher_is_better=False))
    text = render_markdown([result(None), result(5)], metric_specs=specs)
    assert "0.250 (partial: --limit 5)" in text and text.count("(partial") == 2  # summary + task
    assert "| fam      | `err`    | lower is better" in text


def test_a_runs_leaderboard_shows_only_what_it_asked_for(tmp_path, capsys):
    """A typo'd or earlier run in the same folder does not linger as a column."""
    out = tmp_path / "out"
    common = ["run", "--task", "context_retrieval_synthetic", "--output-dir", str(out),
              "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--limit", "10"]
    assert main(common + ["--backend", "random", "--backend-arg", "dim=16"]) == 0
    assert main(common + ["--backend", "random"]) == 0
    capsys.readouterr()
    board = (tmp_path / "out.md").read_text()
    assert "random(dim=16)" not in board and "| random " in board
    assert main(common + ["--backend", "random", "--include-older"]) == 0
    assert "random(dim=16)" in (tmp_path / "out.md").read_text()


def test_data_command_says_where_data_goes(capsys):
    code, out, _ = run(["data", "epic100_mir", "context_retrieval_synthetic"], capsys)
    assert code == 0
    epic, synthetic = out.split("== context_retrieval_synthetic")
    assert "data not found" in epic and "EPIC_100_retrieval_test" in epic
    assert "data found" in synthetic
    code, _, err = run(["data", "no_such_task"], capsys)
    assert code == 2 and "unknown task" in err


def test_export_epic_refuses_a_synthetic_run_unless_forced(capsys, tmp_path):
    out = tmp_path / "out"
    assert main(["run", "--task", "multi_instance_retrieval_synthetic", "--backend", "random",
                 "--output-dir", str(out), "--cache-dir", str(tmp_path / "c"), "--no-progress"]) == 0
    code, _, err = run(["export-epic", str(out), str(tmp_path / "s.pkl")], capsys)
    assert code == 2 and "not the official test set" in err and "--force" in err
    code, _, _ = run(["export-epic", str(out), str(tmp_path / "s.pkl"), "--force"], capsys)
    assert code == 0 and (tmp_path / "s.pkl").is_file()
