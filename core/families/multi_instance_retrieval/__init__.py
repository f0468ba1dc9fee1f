"""The multi_instance_retrieval family: EPIC-KITCHENS-100 multi-instance retrieval.

Its hooks, registered with pluggy like a third-party family's. This module stays
light (``ctxbench list`` imports every family): the evaluator, the loaders, the
metrics and the plots are imported only when used. The challenge export
(``ctxbench export-epic``) is :mod:`.export`. Task files:
``tasks/multi_instance_retrieval/``.
"""

from __future__ import annotations

from pathlib import Path

from ...hooks import hookimpl
from ...lazy import lazy, lazy_value
from ...registrations import FamilySpec, LoaderSpec, MetricSpec
from .protocol import FAMILY, PROTOCOL_DEFAULTS, REFERENCE, check_protocol, metric_names

REAL_OPTIONS = {
    "annotations_dir": "folder with EPIC_100_retrieval_test(.csv|.pkl) and _sentence(.csv|.pkl)",
    "frames_dir": "rgb_frames folder: <participant>/<video>/frame_0000000001.jpg",
    "videos_dir": "videos folder (used when frames_dir is absent): <participant>/videos/<video>.MP4",
    "frame_template": "frame path under frames_dir (fields participant_id, video_id, frame)",
    "video_template": "video path under videos_dir (fields participant_id, video_id)",
    "clips_file": "clip table file name (default EPIC_100_retrieval_test.csv)",
    "sentences_file": "caption table file name (default EPIC_100_retrieval_test_sentence.csv)",
    "relevancy": "'auto' (pickled matrix if present, else derived), 'derive', or a file",
}
SYNTH_OPTIONS = {"n_clips": "number of clips (default 96)", "seed": "generator seed (default 0)",
                 "clip_length": "frames per clip before sampling (default 16)",
                 "size": "frame size in pixels (default 64)",
                 "max_objects": "objects per clip, 1..max (default 2)"}


evaluate = lazy(".evaluator:evaluate", __name__)
load_real = lazy(".data:load_from_options", __name__, name="load_real")
load_synthetic = lazy(".synthetic:load_from_options", __name__, name="load_synthetic")
mir_map = lazy(".metrics:mir_map", __name__)           # official mAP, V->T / T->V / avg
mir_ndcg = lazy(".metrics:mir_ndcg", __name__)         # official nDCG, V->T / T->V / avg
load_plots = lazy_value(".plots:PLOTS", __name__)      # not ``plots``: that is the submodule


@hookimpl
def ctxbench_families():
    return [FamilySpec(name=FAMILY, evaluate=evaluate, protocol_defaults=dict(PROTOCOL_DEFAULTS),
                       check_protocol=check_protocol, metric_names=metric_names, plots=load_plots,
                       description="EPIC-KITCHENS-100 multi-instance retrieval: official mAP and "
                                   "nDCG (soft relevance), V->T, T->V, average")]


@hookimpl
def ctxbench_dataset_loaders():
    return [LoaderSpec("epic100_mir", load_real, FAMILY, "EPIC-KITCHENS-100 MIR test set "
                       "(official annotation files + frames or videos)", dict(REAL_OPTIONS)),
            LoaderSpec("synthetic_kitchen_mir", load_synthetic, FAMILY, "embedded kitchen clips "
                       "from the synthetic world (verb = motion, nouns = objects)",
                       dict(SYNTH_OPTIONS))]


@hookimpl
def ctxbench_metrics():
    return [MetricSpec("mir_map", mir_map, "mAP (R == 1 relevant, soft precision), "
                       "V->T / T->V / avg", FAMILY, True, REFERENCE),
            MetricSpec("mir_ndcg", mir_ndcg, "nDCG (linear gains, truncated at #R > 0), "
                       "V->T / T->V / avg", FAMILY, True, REFERENCE)]


@hookimpl
def ctxbench_task_dirs():
    import ctxbench_tasks
    return [Path(ctxbench_tasks.__file__).parent / FAMILY]
