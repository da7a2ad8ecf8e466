"""The run record's format and identity (one job: what a record is): ``FIELDS`` and their checks
(``validate_record``), the keys that identify a run and a training (``record_key``, ``training_key``).
Where records live (locked JSONL files, merge) is ``lib.records``, which re-exports all of this.

Schema
    ``FIELDS`` lists every required field with its meaning; ``validate_record`` checks each one and
    raises ``ValueError`` naming the bad field. Accuracies are fractions in ``[0, 1]``; summaries
    turn them into percentage points. Extra fields are allowed (they must be JSON-able and finite)
    and are carried through to the DataFrame. ``versions`` is a dict with at least the keys of
    ``VERSION_KEYS``; ``read_records`` flattens it to columns ``versions_jax``, ``versions_numpy``, ...

    The extra fields ``lib.run`` writes describe what the model saw, *after* the data pipeline:
    ``seq_len`` and ``in_features`` are the model input's length and width once reshaped (SCP1 at
    concat/16: 56 × 96, not the raw 896 × 6), ``n_train`` / ``n_val`` / ``n_test`` the split sizes,
    ``data_source`` the file(s) read, ``pipeline`` every step from file to input (its ``raw_shape``
    is the shape before reshaping), and ``segments`` one entry per training segment (a run resumed
    from a checkpoint has two or more, each with its commit, device and start time).

    The MiniRocket baseline (``lib.baseline``) fills the same schema with ``ssm="minirocket"``,
    ``blocks = loops = depth = 0``, ``reshape="none"``, ``chunk=1``, ``lr=0.0``, ``state=0``,
    ``hidden`` = the number of MiniRocket features, ``params_total`` = the number of ridge
    coefficients plus intercepts, ``params_blocks = 0``, and ``batch_size = max_steps = eval_every
    = patience = best_step = steps = 0``, ``compile_s = 0.0`` (no gradient training).

Identity and resume
    ``KEY_FIELDS`` identify a run; ``record_key`` turns a record (or a config dict/object with those
    fields) into a hashable tuple. Appending a record whose key is already in the file replaces the
    old line by default (``on_duplicate="replace"``; ``"skip"`` and ``"error"`` exist), so a file
    never holds two records of one run.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import numbers
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "FIELDS", "INITS", "KEY_FIELDS", "TRAINING_FIELDS", "OPTIONAL_FIELDS", "HISTORY_KEYS", "DERIVED_KEY_FIELDS",
    "VERSION_KEYS", "RESHAPES", "ORDERS", "PROTOCOLS", "PROFILES", "BASELINE_SSMS", "PAPER_SSMS",
    "DEFAULT_DATASETS", "MAIN_TAG", "DEFAULT_WHERE", "record_key", "training_key", "with_key_columns",
    "validate_record", "normalize_record",
]

# --------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------
from lib.reshape import METHODS as RESHAPES, ORDERS  # noqa: E402  (one home: lib.reshape, NumPy only)
#: how a model's weights start (``lib.model.build_model``): the default initialisation, or (standard
#: models) the looped model's weights untied (``lib.model.tied_init``)
INITS = ("default", "tied")
from lib.data import PROTOCOLS, RAGGED_POLICIES  # noqa: E402  (one home: the loader)
from lib.profiles import PROFILE_NAMES as PROFILES  # noqa: E402  (one home: lib.profiles)
VERSION_KEYS = ("jax", "flax", "optax", "numpy", "python")
#: the keys of every ``history`` entry (one per evaluation)
HISTORY_KEYS = ("step", "loss", "train_acc", "val_acc", "test_acc")
#: non-SSM entries of the ``ssm`` field
BASELINE_SSMS = ("minirocket",)
#: the paper's four architectures, in our registry's names (LinOSS: the IM discretisation): the
#: registry's ``SSMSpec.paper`` entries (``lib.ssm.SSMS``)
from lib.ssm import SSMS as _SSMS, paper_ssms as _paper_ssms  # noqa: E402  (one home: the registry; no JAX)
PAPER_SSMS = _paper_ssms()
#: the benchmark sets obtainable here (shared/data/uea/MANIFEST.md); the others are not
DEFAULT_DATASETS = ("SelfRegulationSCP1", "MotorImagery")
#: the tag of the runs the verdicts read by default
MAIN_TAG = "main"
#: the records ``verdicts`` reads by default (smoke-profile numbers are pipeline checks, not results)
DEFAULT_WHERE = {"tag": MAIN_TAG, "protocol": "paper", "profile": "full"}

# name -> (kind, meaning).  kinds: str, int, float, bool, acc (float in [0,1]), choice, dict, time
FIELDS: dict = {
    "dataset": ("str", "UEA data set name, e.g. 'SelfRegulationSCP1'"),
    "ssm": ("str", "SSM name from lib.ssm.SSMS, or 'minirocket' for the baseline"),
    "blocks": ("int", "k, the number of unique (untied) blocks; 0 for the baseline"),
    "loops": ("int", "L, how many times the k blocks are applied; 0 for the baseline"),
    "depth": ("int", "effective depth k·L (must equal blocks*loops)"),
    "reshape": ("choice", "input reshaping: 'none' | 'concat' | 'rechunk'"),
    "chunk": ("int", "concat: timesteps per row; rechunk: values per row; 1 for 'none'"),
    "order": ("choice", "flattening order for rechunk: 'time' | 'feature' ('time' otherwise)"),
    "protocol": ("choice", "split protocol of lib.data.split: 'paper' | 'archive'"),
    "seed": ("int", "split + init seed (the paper's 2345, 3456, 4567, 5678, 6789)"),
    "hidden": ("int", "model width H (baseline: number of MiniRocket features)"),
    "state": ("int", "SSM state size P (baseline: 0)"),
    "lr": ("float", "learning rate (baseline: 0.0)"),
    "batch_size": ("int", "training batch size (baseline: 0)"),
    "max_steps": ("int", "step budget (baseline: 0)"),
    "eval_every": ("int", "steps between validations (baseline: 0)"),
    "patience": ("int", "early-stopping patience in evaluations (baseline: 0)"),
    "time_channel": ("bool", "the peers' time channel t_i = i/T prepended as channel 0"),
    "standardize": ("bool", "per-channel standardisation with training statistics"),
    "input_injection": ("bool", "h_{i+1} = Block(h_i + h_0) instead of Block(h_i)"),
    "params_total": ("int", "trainable parameters (baseline: ridge coefficients + intercepts)"),
    "params_blocks": ("int", "parameters inside the SSM blocks (baseline: 0)"),
    "val_acc": ("acc", "validation accuracy at the reported step, fraction in [0,1]"),
    "test_acc": ("acc", "test accuracy at the last validation improvement, fraction in [0,1]"),
    "train_acc": ("acc", "training accuracy at the reported step, fraction in [0,1]"),
    "best_step": ("int", "step of the reported (best-validation) evaluation"),
    "steps": ("int", "steps actually trained"),
    "wall_s": ("float", "wall-clock seconds of the whole run"),
    "compile_s": ("float", "seconds spent compiling (part of wall_s)"),
    "device": ("str", "'cpu' or the accelerator's name, e.g. 'NVIDIA H100 80GB HBM3'"),
    "n_devices": ("int", "devices the run used"),
    "versions": ("dict", "package versions: at least jax, flax, optax, numpy, python"),
    "commit": ("str", "git sha of the code, or 'unknown'"),
    "dirty": ("bool", "the working tree had uncommitted changes to tracked files"),
    "command": ("str", "the command line that produced the record"),
    "profile": ("choice", "lib.profiles: 'full' (paper protocol) | 'budget' (its truncation) | 'smoke' (pipeline check)"),
    "created": ("time", "ISO 8601 time the record was made"),
    "tag": ("str", "free text grouping runs, e.g. 'main', 'lr-select', 'widget'"),
}
_CHOICES = {"reshape": RESHAPES, "order": ORDERS, "protocol": PROTOCOLS, "profile": PROFILES}

#: the fields that identify one run: everything that changes what is trained, plus ``tag``. A run
#: that differs in any of them is another run (resuming never takes one for the other). Records
#: written before ``pad``, ``ragged``, ``ssm_options`` and ``init`` were fields get them derived
#: (``DERIVED_KEY_FIELDS``); every other field has always been in the records.
KEY_FIELDS = ("dataset", "ssm", "blocks", "loops", "reshape", "chunk", "order", "pad", "protocol", "ragged",
              "seed", "lr", "hidden", "state", "batch_size", "max_steps", "eval_every", "patience",
              "time_channel", "standardize", "input_injection", "ssm_options", "init", "profile", "tag")

#: the optional fields and what they hold (checked by ``validate_record`` when present)
OPTIONAL_FIELDS: dict = {
    "pad": ("bool", "zero-pad the end when the chunk does not divide the length (lib.reshape)"),
    "ragged": ("str", "what was asked about unequal series lengths: 'error' | 'pad' | 'truncate' (lib.data)"),
    "ssm_options": ("dict", "extra SSM layer options (lib.run --ssm-option)"),
    "init": ("str", "how the weights start (lib.model.INITS): 'default' | 'tied' (a standard model as the "
                    "looped one untied, issue 21's control)"),
    "history": ("list", "every evaluation: step, loss, train_acc, val_acc, test_acc"),
    "cpu_s": ("float", "CPU seconds the run's process used, all its threads and sittings (wall_s also counts "
                       "time the machine gave to other work); absent in records made before it was counted"),
}


def _pad_of(rec):
    try:
        return bool(_get(_get(_get(rec, "pipeline"), "reshape"), "pad"))
    except (KeyError, TypeError):
        return False


def _options_of(rec):
    import shlex

    try:
        words = shlex.split(str(_get(rec, "command")))
    except (KeyError, ValueError):
        return {}
    opts = {}
    for i, w in enumerate(words[:-1]):
        if w == "--ssm-option" and "=" in words[i + 1]:
            k, v = words[i + 1].split("=", 1)
            try:
                opts[k] = json.loads(v)
            except json.JSONDecodeError:
                opts[k] = v
    return opts


#: how a record written before a key field existed gets it (from what the record holds)
DERIVED_KEY_FIELDS: dict = {"pad": _pad_of, "ragged": lambda rec: "error", "ssm_options": _options_of,
                             "init": lambda rec: "default"}

def _known_ssms() -> tuple:
    return tuple(_SSMS) + BASELINE_SSMS  # the registry as it is now (SSMs registered later count)


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _bool_key(v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ValueError(f"not a bool: {v!r}")  # bool("False") or bool(nan) would read True
    return bool(v)


def _lr_key(v) -> float:
    return float(f"{float(v):.6g}")  # robust to float32 round-trips


def _options_key(v) -> str:
    if isinstance(v, str):  # already canonical (a DataFrame column, see ``with_key_columns``)
        v = json.loads(v)
    if isinstance(v, (tuple, list)):
        v = dict(v)
    if not isinstance(v, Mapping):
        raise ValueError(f"not a dict of options: {v!r}")
    return json.dumps({str(k): v[k] for k in sorted(v)}, sort_keys=True)


#: what makes two records the same training whichever grid asked for it: the key without ``tag``
TRAINING_FIELDS = tuple(f for f in KEY_FIELDS if f != "tag")

_KEY_CAST = {f: str for f in KEY_FIELDS}
_KEY_CAST.update({f: int for f in ("blocks", "loops", "chunk", "seed", "hidden", "state", "batch_size",
                                   "max_steps", "eval_every", "patience")})
_KEY_CAST.update({f: _bool_key for f in ("time_channel", "standardize", "input_injection", "pad")})
_KEY_CAST["lr"] = _lr_key
_KEY_CAST["ssm_options"] = _options_key


def _get(obj, name):
    if isinstance(obj, Mapping):
        if name not in obj:
            raise KeyError(name)
        return obj[name]
    if isinstance(obj, pd.Series):  # a DataFrame row: look in its index, not its attributes
        if name not in obj.index:
            raise KeyError(name)
        return obj[name]
    if hasattr(obj, name):
        return getattr(obj, name)
    raise KeyError(name)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))  # a DataFrame column another record lacks


def _key(rec, fields, what: str) -> tuple:
    out = []
    for f in fields:
        try:
            v = _get(rec, f)
        except KeyError:
            v = None
            if f not in DERIVED_KEY_FIELDS:
                raise ValueError(f"record has no {what} field {f!r}") from None
        if f in DERIVED_KEY_FIELDS and _missing(v):
            v = DERIVED_KEY_FIELDS[f](rec)
        try:
            out.append(_KEY_CAST[f](v))
        except (TypeError, ValueError):
            raise ValueError(f"{what} field {f!r} has a bad value {v!r}") from None
    return tuple(out)


def record_key(rec) -> tuple:
    """The tuple of ``KEY_FIELDS`` of a record, a config dict, a DataFrame row or an object with
    those attributes; values are normalised (ints, ``lr`` to 6 significant digits, strings)."""
    return _key(rec, KEY_FIELDS, "key")


def training_key(rec) -> tuple:
    """The tuple of ``TRAINING_FIELDS`` of a record (or config): equal for two runs of the same
    training that different grids asked for under different tags. ``ValueError`` when a field is
    missing or bad (a MiniRocket record, say, has no training settings)."""
    return _key(rec, TRAINING_FIELDS, "training")


def normalize_record(rec: Mapping) -> dict:
    """A plain-JSON copy of ``rec``: NumPy scalars/arrays to Python numbers/lists, recursively."""
    def conv(v):
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, np.ndarray):
            return conv(v.tolist())
        if isinstance(v, np.bool_):
            return bool(v)
        if isinstance(v, np.integer):
            return int(v)
        if isinstance(v, np.floating):
            return float(v)
        if isinstance(v, Path):
            return str(v)
        return v
    if not isinstance(rec, Mapping):
        raise ValueError(f"a record must be a dict, got {type(rec).__name__}")
    return conv(rec)


def _bad(field, msg):
    return ValueError(f"field {field!r}: {msg}")


def _check_finite_json(name, v):
    if isinstance(v, Mapping):
        for k, x in v.items():
            _check_finite_json(f"{name}.{k}", x)
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_finite_json(f"{name}[{i}]", x)
    elif isinstance(v, float) and not math.isfinite(v):
        raise _bad(name, f"must be finite, got {v!r}")
    elif not (v is None or isinstance(v, (str, bool, int, float))):
        raise _bad(name, f"is not JSON-serialisable ({type(v).__name__})")


def validate_record(rec: Mapping) -> dict:
    """Check one record against ``FIELDS``; return it (normalised). Raise ``ValueError`` naming
    the bad field: missing, wrong type, NaN/inf, accuracy outside [0, 1], unknown choice, depth !=
    blocks*loops, negative counts, ``chunk != 1`` with ``reshape='none'``, ..."""
    rec = normalize_record(rec)
    for f in FIELDS:
        if f not in rec:
            raise _bad(f, "missing")
    for f, (kind, _) in FIELDS.items():
        v = rec[f]
        if kind in ("str", "time"):
            if not isinstance(v, str):
                raise _bad(f, f"must be a string, got {v!r}")
            if f not in ("tag", "command") and not v.strip():
                raise _bad(f, "must not be empty")
        elif kind == "choice":
            if v not in _CHOICES[f]:
                raise _bad(f, f"must be one of {_CHOICES[f]}, got {v!r}")
        elif kind == "int":
            if not _is_int(v):
                raise _bad(f, f"must be an integer, got {v!r}")
            if v < 0:
                raise _bad(f, f"must be >= 0, got {v!r}")
        elif kind in ("float", "acc"):
            if not _is_real(v):
                raise _bad(f, f"must be a number, got {v!r}")
            if not math.isfinite(v):
                raise _bad(f, f"must be finite, got {v!r}")
            if kind == "acc" and not 0.0 <= v <= 1.0:
                raise _bad(f, f"is an accuracy and must be a fraction in [0, 1], got {v!r}")
            if v < 0:
                raise _bad(f, f"must be >= 0, got {v!r}")
        elif kind == "bool":
            if not isinstance(v, bool):
                raise _bad(f, f"must be true or false, got {v!r}")
        elif kind == "dict":
            if not isinstance(v, Mapping):
                raise _bad(f, f"must be an object, got {v!r}")
    # cross-field rules
    if rec["ssm"] not in _known_ssms():
        raise _bad("ssm", f"must be one of {_known_ssms()}, got {rec['ssm']!r}")
    for k in VERSION_KEYS:
        if k not in rec["versions"]:
            raise _bad("versions", f"has no {k!r} entry")
        if not isinstance(rec["versions"][k], str):
            raise _bad("versions", f"entry {k!r} must be a string, got {rec['versions'][k]!r}")
    if rec["depth"] != rec["blocks"] * rec["loops"]:
        raise _bad("depth", f"must equal blocks*loops = {rec['blocks'] * rec['loops']}, "
                            f"got {rec['depth']}")
    if rec["ssm"] in BASELINE_SSMS:
        if rec["blocks"] or rec["loops"]:
            raise _bad("blocks", f"must be 0 for the {rec['ssm']} baseline")
    else:
        for f in ("blocks", "loops", "hidden", "state", "batch_size", "max_steps", "eval_every",
                  "n_devices"):
            if rec[f] < 1:
                raise _bad(f, f"must be >= 1 for an SSM run, got {rec[f]}")
        if rec["lr"] <= 0:
            raise _bad("lr", f"must be > 0 for an SSM run, got {rec['lr']}")
        if rec["best_step"] > rec["steps"]:
            raise _bad("best_step", f"({rec['best_step']}) exceeds steps ({rec['steps']})")
    if rec["chunk"] < 1:
        raise _bad("chunk", f"must be >= 1, got {rec['chunk']}")
    if rec["reshape"] == "none" and rec["chunk"] != 1:
        raise _bad("chunk", f"must be 1 when reshape is 'none', got {rec['chunk']}")
    if rec["params_blocks"] > rec["params_total"]:
        raise _bad("params_blocks", f"({rec['params_blocks']}) exceeds params_total "
                                    f"({rec['params_total']})")
    if rec["compile_s"] > rec["wall_s"] + 1e-6:
        raise _bad("compile_s", f"({rec['compile_s']}) exceeds wall_s ({rec['wall_s']})")
    try:
        _dt.datetime.fromisoformat(rec["created"])
    except ValueError:
        raise _bad("created", f"is not an ISO 8601 time: {rec['created']!r}") from None
    for f, (kind, _) in OPTIONAL_FIELDS.items():
        if f not in rec:
            continue
        v = rec[f]
        if kind == "bool" and not isinstance(v, bool):
            raise _bad(f, f"must be true or false, got {v!r}")
        if kind == "str" and not isinstance(v, str):
            raise _bad(f, f"must be a string, got {v!r}")
        if kind == "dict" and not isinstance(v, Mapping):
            raise _bad(f, f"must be an object, got {v!r}")
        if kind == "list" and not isinstance(v, list):
            raise _bad(f, f"must be a list, got {v!r}")
        if kind == "float" and not (_is_real(v) and v >= 0):
            raise _bad(f, f"must be a number >= 0, got {v!r}")
    for i, h in enumerate(rec.get("history") or ()):
        if not (isinstance(h, Mapping) and all(k in h for k in HISTORY_KEYS)):
            raise _bad("history", f"entry {i} must hold {HISTORY_KEYS}, got {h!r}")
        for k in HISTORY_KEYS[2:]:
            if not (_is_real(h[k]) and 0.0 <= h[k] <= 1.0):
                raise _bad("history", f"entry {i}: {k} must be a fraction in [0, 1], got {h[k]!r}")
    if rec.get("init", "default") not in INITS:
        raise _bad("init", f"must be one of {INITS}, got {rec['init']!r}")
    if rec.get("ragged", "error") not in RAGGED_POLICIES:
        raise _bad("ragged", f"must be one of {RAGGED_POLICIES}, got {rec['ragged']!r}")
    for k, v in rec.items():
        _check_finite_json(k, v)
    return rec



def with_key_columns(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every ``KEY_FIELDS`` column present and hashable: a derived key field a record lacks
    (``DERIVED_KEY_FIELDS``) is filled from what the record holds, and ``ssm_options`` is its canonical
    JSON text, so frames group and pair on the whole key."""
    if df.empty or all(f in df.columns for f in DERIVED_KEY_FIELDS) and (
            "ssm_options" not in df.columns or df["ssm_options"].map(lambda v: isinstance(v, str)).all()):
        return df
    df = df.copy()
    rows = df.to_dict("records")
    for f, derive in DERIVED_KEY_FIELDS.items():
        have = df[f] if f in df.columns else pd.Series([None] * len(df), index=df.index)
        df[f] = [derive(r) if _missing(v) else v for r, v in zip(rows, have)]
    df["ssm_options"] = [_options_key(v) for v in df["ssm_options"]]
    df["pad"] = df["pad"].astype(bool)
    return df
