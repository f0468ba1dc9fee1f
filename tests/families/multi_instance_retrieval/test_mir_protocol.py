"""The family's registration: a light __init__, the protocol check, the metric names
the evaluator emits, and the loaders' path handling (task-relative, symlinks refused)."""

import os

import pytest

from ctxbench.encoder import CachedEncoder
from ctxbench.errors import PathEscapeError, ProtocolError
from ctxbench.families import multi_instance_retrieval as family
from ctxbench.families.contract import EvalRequest
from ctxbench.families.multi_instance_retrieval import data as epic
from ctxbench.families.multi_instance_retrieval import evaluator
from ctxbench.families.multi_instance_retrieval.protocol import (PROTOCOL_DEFAULTS, check_protocol,
                                                                 metric_names)
from ctxbench.families.multi_instance_retrieval.synthetic import build
from ctxbench.registrations import LoadContext
from ctxbench_plugins.random_backend import RandomBackend

from test_epic_data import CLIPS, write_fixtures, write_frames


# (the light-import check of this family's hooks is in tests/core/test_family_contract.py)


def test_spec_declares_protocol_check_metric_names_and_plots():
    spec, = family.ctxbench_families()
    assert spec.check_protocol is check_protocol and spec.metric_names is metric_names
    assert spec.protocol_defaults == PROTOCOL_DEFAULTS and not getattr(spec, "metrics", ())
    assert callable(spec.plots)
    check_protocol(dict(PROTOCOL_DEFAULTS))


@pytest.mark.parametrize("option, value, words", [
    ("n_frames", 0, "integer >= 1"),
    ("n_frames", "8", "integer >= 1"),
    ("tta_hflip", "no", "true or false"),
    ("tta_scales", [1.5], "crop fractions"),
    ("tta_scales", [], "crop fractions"),
    ("bootstrap_resamples", -1, "integer >= 1"),
    ("nan_policy", "drop", "propagate"),
])
def test_check_protocol_names_the_option(option, value, words):
    with pytest.raises(ProtocolError, match=words) as info:
        check_protocol({**PROTOCOL_DEFAULTS, option: value})
    assert info.value.option == option


def test_emitted_metric_names_are_the_declared_ones():
    dataset = build(n_clips=24, seed=0)
    p = {**PROTOCOL_DEFAULTS, "n_frames": 2, "bootstrap_resamples": 50}
    enc = CachedEncoder(RandomBackend(), cache=None, progress=False)
    out = evaluator.evaluate(EvalRequest(task=None, dataset=dataset, encoder=enc, protocol=p))
    assert set(out.metrics) == set(metric_names(p)) and set(out.headline) <= set(metric_names(p))


def test_real_loader_resolves_folders_against_the_task_file(tmp_path, monkeypatch):
    monkeypatch.setattr("ctxbench.families.multi_instance_retrieval.data.MIN_LIMIT_CLIPS", 1)
    write_fixtures(tmp_path / "data" / "ann")
    write_frames(tmp_path / "data" / "rgb_frames")
    task = tmp_path / "tasks" / "epic.yaml"
    task.parent.mkdir()
    options = {"annotations_dir": "../data/ann", "frames_dir": "../data/rgb_frames"}
    ds = family.load_real(options, LoadContext("epic", task))
    assert ds.vis_ids == [c[0] for c in CLIPS]
    assert len(family.load_real(options, LoadContext("epic", task, limit=2)).vis_ids) == 2


def test_frame_symlink_leading_out_of_frames_dir_is_refused(tmp_path):
    """A symlinked video folder inside frames_dir that points outside it: the old
    lexical check followed it; resolve-then-contain refuses it."""
    folder = write_fixtures(tmp_path / "ann")
    frames = write_frames(tmp_path / "elsewhere")          # the real frames, outside the root
    root = tmp_path / "rgb_frames"
    root.mkdir()
    for participant in {c[1] for c in CLIPS}:
        os.symlink(frames / participant, root / participant)
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        epic.load_epic_mir(folder, frames_dir=root)
    clip = epic.FrameDirClip(root, epic.DEFAULT_FRAME_TEMPLATE, CLIPS[0][1], CLIPS[0][2], 1, 4, "x")
    with pytest.raises(PathEscapeError, match="clip x"):
        clip.frames(2)


def test_video_symlink_leading_out_of_videos_dir_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "P01_01.MP4").write_bytes(b"not a video")
    (tmp_path / "videos" / "P01").mkdir(parents=True)
    os.symlink(outside, tmp_path / "videos" / "P01" / "videos")
    clip = epic.VideoFileClip(tmp_path / "videos", epic.DEFAULT_VIDEO_TEMPLATE, "P01", "P01_01", 1, 5)
    with pytest.raises(PathEscapeError, match="outside the dataset root"):
        clip.path()


def test_annotation_and_relevancy_symlinks_leading_out_are_refused(tmp_path):
    write_fixtures(tmp_path / "real")
    frames = write_frames(tmp_path / "rgb_frames")
    ann = tmp_path / "ann"
    ann.mkdir()
    for name in ("EPIC_100_retrieval_test.csv", "EPIC_100_retrieval_test_sentence.csv"):
        os.symlink(tmp_path / "real" / name, ann / name)
    with pytest.raises(PathEscapeError, match="annotation file name"):
        epic.load_epic_mir(ann, frames_dir=frames)
    folder = write_fixtures(tmp_path / "ann2")
    os.symlink(tmp_path / "real", folder / "rel")
    with pytest.raises(PathEscapeError, match="relevancy"):
        epic.load_epic_mir(folder, frames_dir=frames, relevancy="rel/anything.pkl")


def test_synthetic_loader_limit(tmp_path, monkeypatch):
    monkeypatch.setattr("ctxbench.families.multi_instance_retrieval.data.MIN_LIMIT_CLIPS", 1)
    full = family.load_synthetic({"n_clips": 30}, LoadContext("k", tmp_path / "t.yaml"))
    cut = family.load_synthetic({"n_clips": 30}, LoadContext("k", tmp_path / "t.yaml", limit=10))
    same = family.load_synthetic({"n_clips": 30}, LoadContext("k", tmp_path / "t.yaml", limit=99))
    assert len(full.vis_ids) == 30 and len(cut.vis_ids) <= 10 and same.vis_ids == full.vis_ids
