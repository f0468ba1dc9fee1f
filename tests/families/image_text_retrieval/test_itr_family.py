"""The image_text_retrieval family end to end: its task files validate, and
`ctxbench run` evaluates the example folder (a user's own task file) and the
embedded synthetic set with the `random` and `toy_clip` backends."""

import json
import shutil
from pathlib import Path

import pytest

from ctxbench.cli import main
from ctxbench.task_config import parse_task

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "own_images"
SYNTH = REPO / "tasks" / "image_text_retrieval" / "image_text_retrieval_synthetic.yaml"


def results(out: Path, task: str) -> dict[str, dict]:
    cells = [json.loads(p.read_text()) for p in (out / task).glob("*.json")]
    return {c["backend"]: c for c in cells}


@pytest.fixture(scope="module")
def run_both(tmp_path_factory, isolated_ctxbench_cache):
    """One `ctxbench run` of the example task file and the synthetic task (first 60
    images) with both embedded backends (toy_clip is loaded once)."""
    out = tmp_path_factory.mktemp("itr") / "run"
    rc = main(["run", "--task", f"{EXAMPLE / 'my_images.yaml'},image_text_retrieval_synthetic",
               "--backend", "random,toy_clip", "--limit", "60", "--output-dir", str(out),
               "--no-progress"])
    assert rc == 0
    return out


def test_task_files_validate(plugin_host, task_catalog):
    for path in (SYNTH, EXAMPLE / "my_images.yaml"):
        spec = parse_task(path, plugin_host.families, plugin_host.loaders)
        assert spec.family == "image_text_retrieval"
    assert "image_text_retrieval_synthetic" in task_catalog.groups()["all"]
    assert task_catalog.tasks.get("image_text_retrieval_synthetic").family == "image_text_retrieval"


def test_unknown_loader_option_is_refused(plugin_host, tmp_path):
    from ctxbench.errors import TaskConfigError
    path = tmp_path / "t.yaml"
    path.write_text("task: t\nfamily: image_text_retrieval\nversion: 1\ndataset:\n"
                    "  loader: image_text_folder\n  options: {captions: c.csv, image_colum: x}\n")
    with pytest.raises(TaskConfigError, match="image_column"):
        parse_task(path, plugin_host.families, plugin_host.loaders)


def test_example_run_random_and_toy_clip(run_both):
    cells = results(run_both, "my_images")
    assert set(cells) == {"random", "toy_clip"}
    for cell in cells.values():
        assert cell["status"] == "ok", cell["error"]
        assert cell["headline"] == ["t2i/R@1", "i2t/R@1"]
        assert cell["details"]["n_images"] == 8 and cell["details"]["n_captions"] == 17
        assert cell["details"]["format"] == "csv"
        lo, hi = cell["metrics"]["t2i/R@1"]["ci"]
        assert 0 <= lo <= cell["metrics"]["t2i/R@1"]["value"] <= hi <= 1
    assert cells["toy_clip"]["metrics"]["t2i/R@1"]["value"] > 0.8
    assert cells["toy_clip"]["metrics"]["i2t/R@1"]["value"] > 0.8
    assert cells["toy_clip"]["encoder_stats"]["duplicates_skipped"] == 0


def test_toy_clip_is_far_above_chance_on_the_synthetic_set(run_both):
    cells = results(run_both, "image_text_retrieval_synthetic")
    for cell in cells.values():
        assert cell["status"] == "ok", cell["error"]
        assert cell["details"]["n_images"] == 60 and cell["details"]["n_captions"] == 180
    toy, rnd = cells["toy_clip"]["metrics"], cells["random"]["metrics"]
    chance = cells["toy_clip"]["details"]["chance_t2i_R@1"]
    assert chance == pytest.approx(1 / 60)
    assert toy["t2i/R@1"]["value"] > 0.6 and toy["i2t/R@1"]["value"] > 0.6
    assert toy["t2i/R@1"]["ci"][0] > 20 * chance and toy["i2t/R@1"]["ci"][0] > 0.5
    assert rnd["t2i/R@1"]["value"] < 0.1 and rnd["t2i/R@10"]["value"] < 0.3
    assert toy["t2i/R@10"]["value"] > rnd["t2i/R@10"]["value"] + 0.5


def test_a_users_folder_with_a_missing_image_fails_with_the_row(tmp_path, isolated_ctxbench_cache,
                                                                  capsys):
    shutil.copytree(EXAMPLE, tmp_path / "mine")
    (tmp_path / "mine" / "images" / "brown_star.png").unlink()
    rc = main(["run", "--task", str(tmp_path / "mine" / "my_images.yaml"), "--backend", "random",
               "--output-dir", str(tmp_path / "out"), "--no-progress"])
    cell = next(iter(results(tmp_path / "out", "my_images").values()))
    assert rc != 0 and cell["status"] == "failed"
    assert "captions.csv: line 17: field 'image': 'brown_star.png'" in cell["error"]["message"]


def test_report_plot_is_drawn_from_the_results(run_both, plugin_host):
    from ctxbench.report import backend_colors
    from ctxbench.report.drawing import TaskData
    from ctxbench.results import read_result
    cells = [read_result(p) for p in (run_both / "image_text_retrieval_synthetic").glob("*.json")]
    colours = backend_colors(sorted(c.backend_label for c in cells))
    plots = plugin_host.families.get("image_text_retrieval").plots()
    drawn = [p for fn in plots for p in fn(TaskData("image_text_retrieval_synthetic",
                                                    "image_text_retrieval", cells, colours))]
    assert drawn and not any(p.skipped for p in drawn)
    assert [ax.get_title() for ax in drawn[0].figure.axes[:2]] == ["text → image", "image → text"]
