"""The aesthetics evaluator: merge and check the protocol, then dispatch on the dataset.

- an :class:`~ctxbench.families.aesthetics.data.AestheticsDataset` (AVA or the
  embedded set) is a quality task, :mod:`ctxbench.families.aesthetics.quality`;
- a :class:`~ctxbench.families.aesthetics.data.ParamSweepDataset` is a parameter
  sweep, :mod:`ctxbench.families.aesthetics.sweep`.
"""

from __future__ import annotations

from ...errors import CtxbenchError, ProtocolError, TaskConfigError
from ...probe import probe_memo
from ..contract import EvalRequest, FamilyOutput
from .data import AestheticsDataset, ParamSweepDataset
from .protocol import PROTOCOL_DEFAULTS, check_protocol


def evaluate(req: EvalRequest) -> FamilyOutput:
    protocol = {**PROTOCOL_DEFAULTS, **req.protocol}
    try:
        check_protocol(protocol)
    except ProtocolError as exc:
        raise TaskConfigError(getattr(req.task, "path", "task"), f"protocol.{exc.option}",
                              exc.problem, exc.fix) from None
    req.protocol = protocol
    from .probes import MEMO_VERSION, using_memo
    with using_memo(probe_memo(req, "aesthetics", MEMO_VERSION)):
        if isinstance(req.dataset, ParamSweepDataset):
            from .sweep import evaluate_sweep
            return evaluate_sweep(req)
        if isinstance(req.dataset, AestheticsDataset):
            from .quality import evaluate_quality
            return evaluate_quality(req)
    raise CtxbenchError(f"aesthetics: unsupported dataset type {type(req.dataset).__name__} "
                        f"(expected AestheticsDataset or ParamSweepDataset)")
