"""Argument declarations shared by the model backends (``BackendSpec.args``).

Each backend module lists its own arguments from these pieces, so that the help
text of ``dtype`` or ``device_map`` reads the same everywhere and the CLI refuses
an unknown name or a wrong type before a model loads.
"""

from __future__ import annotations

from ctxbench.backend import BackendArg

DTYPES = ("auto", "fp32", "bf16", "fp16", "float32", "float", "bfloat16", "float16", "half")


def model(what: str = "hub id or local directory of the model") -> BackendArg:
    return BackendArg("model", str, None, f"{what} (required)")


REVISION = BackendArg("revision", str, None, "hub revision (branch, tag or commit) of model")
DTYPE = BackendArg("dtype", str, "auto", "precision: auto (bf16/fp16 on CUDA, else fp32), fp32, "
                                         "bf16, fp16", choices=DTYPES, variant="bf16")
DEVICE_MAP = BackendArg("device_map", str, None, "transformers device_map, e.g. auto (needs "
                                                 "accelerate) to shard a large model", vary=False)
CONTEXT_FUSION = BackendArg("context_fusion", str, "none", "none, or late: ctxbench's late-fusion "
                                                           "fallback (the model takes no context)",
                            choices=("none", "late"))
FUSION_WEIGHT = BackendArg("fusion_weight", float, 0.5, "weight of the context under "
                                                        "context_fusion=late")


def min_vocab(default: int) -> BackendArg:
    return BackendArg("min_vocab", int, default, "tokenizer sanity check: refuse a vocabulary "
                                                 "smaller than this")
