"""Looped SSMs: blocks, depth policy, reshaping, data, training, results (see the book).

Public API (imported lazily so that ``import lib.reshape`` does not pull in JAX)::

    import lib
    model = lib.build_model(ssm="s5", blocks=1, loops=6, hidden=64, state=64,
                            in_features=6, num_classes=4, seed=0)
    logits = model(x)                  # (batch, T, in_features) -> (batch, num_classes)
    lib.count_params(model)            # {"total": ..., "blocks": ...}
    standard = lib.untie(model)        # blocks*loops untied copies: same function
"""
from __future__ import annotations

import importlib

_LAZY = {
    "build_model": "lib.model",
    "count_params": "lib.model",
    "untie": "lib.model",
    "LoopedClassifier": "lib.model",
    "SSM_NAMES": "lib.ssm",
    "make_ssm": "lib.ssm",
}
_SUBMODULES = {"reshape", "scan", "ssm", "model", "datasets", "uea", "data", "train", "store", "profiles", "schema",
               "records", "provenance", "stats", "claims", "controls", "results", "run", "grid", "launch", "cost",
               "tables", "baseline", "viz", "theory", "looping", "book", "bench"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"lib.{name}")
    raise AttributeError(f"module 'lib' has no attribute {name!r}")
