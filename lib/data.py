"""UEA multivariate time-series classification data: loading, the peers' splits, preparation.

Three steps, each a plain function of arrays (nothing here changes global state; importing this
module imports neither JAX nor sktime)::

    data = load_uea("SelfRegulationSCP1")           # published train/test, (N, T, C) float32
    s = split(data, "paper", seed=2345, time=True)  # the 70/15/15 split of Log-NCDE/LinOSS/LrcSSM
    s = prepare(s, reshape="concat", chunk=8)       # optional standardisation and input reshaping
    s.X_train, s.y_train, s.X_val, ..., s.pipeline  # pipeline: a JSON-able record of all of it

Loading (``load_uea``)
    Folders are searched in order: ``folder`` if given (then only it); otherwise the environment
    variables ``LOOPED_SSM_UEA_DIR`` and ``LOOPED_SSM_DATA_DIR``, then ``shared/data/uea`` in the
    repository root or in any folder above it (for this checkout: ``/work/shared/data/uea``). In
    each folder a UEA ``.ts`` pair (``NAME_TRAIN.ts`` + ``NAME_TEST.ts``, directly or in ``NAME/``)
    takes precedence over ``NAME.npz`` (the format of ``shared/data/uea/MANIFEST.md``); the first
    folder holding either wins. ``.ts`` files are read with sktime's ``load_from_tsfile`` (both
    formats' readers: ``lib.uea``). Nothing is ever downloaded.

    Labels are integers ``0..K-1`` indexing ``class_names``, which are the label strings **sorted**
    (code-point order), the mapping of scikit-learn's ``LabelEncoder`` that the peers apply to the
    label strings of the archive's arff files (Log-NCDE ``data_dir/process_uea.py``, copied by
    LinOSS and by LrcSSM's split pickles). The npz files store the archive's own header order
    instead (e.g. BasicMotions ``Standing, Running, Walking, Badminton``), so their labels are
    re-mapped here. sktime lower-cases ``.ts`` labels; their original spelling is restored from the
    ``@classLabel`` header before sorting, so a ``.ts`` pair and its npz give identical labels.

Splitting (``split``)
    ``"paper"`` is the protocol of Log-NCDE (``data_dir/process_uea.py`` then
    ``data_dir/datasets.py``), reused unchanged by LinOSS and LrcSSM: concatenate the published
    train and test sets, drop duplicate cases with ``np.unique(X, axis=0, return_index=True)`` on
    the (N, T, C) array (which also sorts the cases lexicographically; labels follow the first
    occurrence), then per seed ``key = PRNGKey(seed); datasetkey, _, _, _ = split(key, 4);
    permkey, _ = split(datasetkey); idx = permutation(permkey, N)`` and cut ``idx`` 70/15/15 at
    ``int(0.7 N)`` and ``int(0.85 N)``. The permutation is drawn with
    ``jax_threefry_partitionable=False`` (the JAX default when the peers ran; JAX 0.5 changed the
    default and with it every split), set only for that call through JAX's context manager.
    This reproduces the SelfRegulationSCP1 split indices the peers' pickles hold, for all five seeds
    ``PAPER_SEEDS`` (``shared/data/uea/SelfRegulationSCP1.splits.json``; checked by the tests).

    ``"archive"`` keeps the published test set and carves a stratified ``val_fraction`` of the
    published train set as validation (``sklearn.model_selection.train_test_split``); no
    deduplication.

    ``time=True`` prepends the peers' time channel ``t_i = i / T`` (their ``T/L · i`` with horizon
    ``T = 1``), i = 0..T-1, as channel 0.

Preparation (``prepare``)
    The peers do not normalise inputs; ``standardize=True`` is an option of this project. It
    standardises each original channel with the mean and standard deviation of the training part
    (over cases and time steps), applies those same statistics to validation and test, and leaves
    the time channel alone. It runs *before* reshaping, so a statistic belongs to one physical
    channel whatever the reshape mixes together. Reshaping then goes through
    ``lib.reshape.reshape_input`` (``"none"``, ``"concat"``, ``"rechunk"``).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from lib.datasets import (  # noqa: F401  (one home: lib.datasets; re-exported here)
    _HOW_TO_POINT, ENV_DATA_DIR, ENV_UEA_DIR, _names_in, _ts_pair, available_datasets, check_name, data_folders)
from lib.reshape import reshape_input
from lib.uea import UEAData, _load_npz, _load_ts_pair  # noqa: F401  (the file formats: lib.uea)

__all__ = [
    "PAPER_SEEDS", "PROTOCOLS", "RAGGED_POLICIES", "UEAData", "Split",
    "load_uea", "available_datasets", "data_folders", "split", "prepare", "paper_permutation",
    "unique_cases", "majority_rate",
]

PAPER_SEEDS = (2345, 3456, 4567, 5678, 6789)
PROTOCOLS = ("paper", "archive")
RAGGED_POLICIES = ("error", "pad", "truncate")


# --------------------------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Split:
    """Train/validation/test arrays plus where they came from.

    ``idx_*`` index the *pool* the protocol drew from: for ``"paper"`` the deduplicated, sorted
    concatenation of published train and test (``pool_index[j]`` is the position of pool case ``j``
    in ``concat(X_train, X_test)`` of the loaded data, so ``pool_index >= n_published_train`` marks
    cases from the published test set); for ``"archive"`` ``idx_train``/``idx_val`` index the
    published train set and ``idx_test`` the published test set. ``n_duplicates`` counts the cases
    deduplication dropped (``"paper"``) or the published test cases that also occur in the
    published train set (``"archive"``, where they are kept). ``pipeline`` is a JSON-able record of
    everything applied, for run records.
    """

    name: str
    protocol: str
    seed: int
    time: bool
    class_names: tuple
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    idx_train: np.ndarray
    idx_val: np.ndarray
    idx_test: np.ndarray
    pool_index: Optional[np.ndarray]
    n_pool: int
    n_duplicates: int
    pipeline: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def sizes(self) -> tuple:
        return (len(self.y_train), len(self.y_val), len(self.y_test))

    @property
    def input_shape(self) -> tuple:
        """``(T, C)`` of one input case as the model sees it."""
        return tuple(int(n) for n in self.X_train.shape[1:])


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
def load_uea(name: str, *, folder=None, ragged: str = "error") -> UEAData:
    """Load a UEA data set's published train/test split (see the module docstring for the rules).

    ``ragged`` decides about unequal series lengths: ``"error"`` (default) refuses them, ``"pad"``
    pads every case to the longest length in train+test by repeating its last observation (the
    convention of the npz files), ``"truncate"`` cuts every case to the shortest length.
    """
    check_name(name)
    if ragged not in RAGGED_POLICIES:
        raise ValueError(f"ragged must be one of {RAGGED_POLICIES}, got {ragged!r}")
    if folder is not None and not Path(folder).is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist; {_HOW_TO_POINT}")
    folders = data_folders(folder)
    for f in folders:
        pair = _ts_pair(f, name)
        if pair is not None:
            return _load_ts_pair(name, *pair, ragged=ragged)
        npz = f / f"{name}.npz"
        if npz.is_file():
            return _load_npz(name, npz, ragged=ragged)
    where = ", ".join(str(f) for f in folders) or "(no data folder found)"
    avail = sorted(set().union(*(_names_in(f) for f in folders))) if folders else []
    raise ValueError(
        f"unknown data set {name!r}: not found in {where}. Available: "
        f"{', '.join(avail) if avail else 'none'}. To use another UEA data set, {_HOW_TO_POINT}."
    )


# --------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------
def majority_rate(name: str) -> Optional[float]:
    """The share of a data set's most frequent class over all its cases (train and test): the accuracy
    of always answering that class, the chance level an imbalanced set must be judged against (LSST:
    14 classes, so 1/14 = 7 %, but one class holds 32 % of the cases). ``None`` where the data set's
    files are not found here."""
    folders = tuple(data_folders())
    if name not in available_datasets():
        return None
    return _majority_rate(name, folders)


@functools.lru_cache(maxsize=None)
def _majority_rate(name: str, folders: tuple) -> float:
    d = load_uea(name, ragged="pad")  # labels do not depend on the ragged policy
    y = np.concatenate([d.y_train, d.y_test])
    return float(np.bincount(y).max() / len(y))


def unique_cases(*parts: np.ndarray) -> np.ndarray:
    """Indices of the distinct cases of ``concat(parts)`` in lexicographic order of their values.

    Equal to ``np.unique(np.concatenate(parts), axis=0, return_index=True)[1]`` (first occurrence
    of each distinct case; float comparison, so -0.0 equals 0.0), the call the peers make, but
    without copying the data and much faster on long series: cases are sorted on their first 16
    values and only ties are compared in full (MotorImagery: milliseconds instead of 5 s).
    """
    flats = [np.ascontiguousarray(p).reshape(len(p), -1) for p in parts]
    offsets = np.cumsum([0] + [len(f) for f in flats])
    n = int(offsets[-1])
    if n == 0:
        return np.zeros(0, np.int64)
    m = flats[0].shape[1]

    def rows(ix):
        out = np.empty((len(ix), m), flats[0].dtype)
        which = np.searchsorted(offsets, ix, side="right") - 1
        for j, f in enumerate(flats):
            sel = which == j
            out[sel] = f[ix[sel] - offsets[j]]
        return out

    k = min(m, 16)
    prefix = np.concatenate([f[:, :k] for f in flats])
    order = np.lexsort(prefix.T[::-1])  # stable; column 0 is the primary key
    prefix = prefix[order]
    keep = np.ones(n, bool)
    keep[1:] = np.any(prefix[1:] != prefix[:-1], axis=1)
    starts = np.flatnonzero(keep)
    ends = np.append(starts[1:], n)
    for s, e in zip(starts, ends):
        if e - s < 2:
            continue
        members = order[s:e]
        sub = rows(members)
        view = sub.view(np.dtype([(f"f{i}", sub.dtype) for i in range(m)])).ravel()
        perm = np.argsort(view, kind="stable")  # the sort np.unique does (mergesort)
        order[s:e] = members[perm]
        sub = sub[perm]
        keep[s + 1:e] = np.any(sub[1:] != sub[:-1], axis=1)
    return order[keep].astype(np.int64)


def _take(parts, ix: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)[ix]`` without building the concatenation."""
    offsets = np.cumsum([0] + [len(p) for p in parts])
    out = np.empty((len(ix),) + parts[0].shape[1:], parts[0].dtype)
    which = np.searchsorted(offsets, ix, side="right") - 1
    for j, p in enumerate(parts):
        sel = which == j
        out[sel] = p[ix[sel] - offsets[j]]
    return out


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    return int(seed)


def paper_permutation(seed: int, n: int) -> np.ndarray:
    """The peers' split permutation of ``range(n)`` for ``seed`` (see the module docstring).

    JAX's ``threefry_partitionable`` flag is set to False only inside this call, through the
    ``jax.threefry_partitionable`` context manager, which restores the caller's setting.
    """
    import jax
    import jax.random as jr

    seed = _check_seed(seed)
    with jax.threefry_partitionable(False):
        key = jr.PRNGKey(seed)
        datasetkey, _, _, _ = jr.split(key, 4)
        permkey, _ = jr.split(datasetkey)
        return np.asarray(jr.permutation(permkey, n)).astype(np.int64)


def _time_channel(X: np.ndarray) -> np.ndarray:
    """Prepend ``t_i = i / T`` as channel 0, computed as the peers do (float32 ``i * (1/T)``)."""
    N, T, _ = X.shape
    t = np.arange(T, dtype=np.float32) * np.float32(1.0 / T)
    return np.concatenate([np.broadcast_to(t[None, :, None], (N, T, 1)), X], axis=2)


def _n_shared_cases(A: np.ndarray, B: np.ndarray) -> int:
    """How many cases of ``B`` also occur in ``A`` (exact bytes)."""
    seen = {a.tobytes() for a in A}
    return sum(b.tobytes() in seen for b in B)


def split(data, protocol: str = "paper", seed: int = 2345, *, time: bool = False,
          val_fraction: float = 0.15, folder=None) -> Split:
    """Split a data set (a ``UEAData`` or a name for ``load_uea``) into train/validation/test.

    ``protocol="paper"``: the peers' pooled, deduplicated 70/15/15 split (module docstring).
    ``protocol="archive"``: published test set; stratified ``val_fraction`` of the published train
    set as validation, drawn with ``random_state=seed``. ``val_fraction`` applies to ``"archive"``
    only (the paper's cuts are fixed). ``time=True`` prepends the time channel ``i / T``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    seed = _check_seed(seed)
    if not isinstance(val_fraction, (float, int)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if protocol == "paper" and val_fraction != 0.15:
        raise ValueError("val_fraction applies to protocol='archive' only; the paper protocol "
                         "cuts 70/15/15")
    if isinstance(data, str):
        data = load_uea(data, folder=folder)
    if not isinstance(data, UEAData):
        raise ValueError(f"data must be a UEAData (from load_uea) or a data set name, got {type(data)}")

    if protocol == "paper":
        published = (data.X_train, data.X_test)
        y_pool = np.concatenate([data.y_train, data.y_test])
        pool_index = unique_cases(*published)  # the deduplicated, sorted pool
        n = len(pool_index)
        idx = paper_permutation(seed, n)
        b1, b2 = int(n * 0.7), int(n * 0.85)
        idx_train, idx_val, idx_test = idx[:b1], idx[b1:b2], idx[b2:]
        parts = [(_take(published, pool_index[i]), y_pool[pool_index[i]])
                 for i in (idx_train, idx_val, idx_test)]
        n_pool, n_dup = n, len(y_pool) - n
    else:
        from sklearn.model_selection import train_test_split

        n_tr = len(data.y_train)
        try:
            idx_train, idx_val = train_test_split(
                np.arange(n_tr), test_size=val_fraction, stratify=data.y_train, random_state=seed)
        except ValueError as e:
            raise ValueError(f"{data.name}: cannot carve a stratified validation set of "
                             f"{val_fraction} from {n_tr} training cases ({e})") from None
        idx_train, idx_val = np.sort(idx_train), np.sort(idx_val)
        idx_test = np.arange(len(data.y_test))
        parts = [(data.X_train[idx_train], data.y_train[idx_train]),
                 (data.X_train[idx_val], data.y_train[idx_val]),
                 (data.X_test, data.y_test)]
        pool_index, n_pool = None, n_tr
        n_dup = _n_shared_cases(data.X_train, data.X_test)
    if time:
        parts = [(_time_channel(x), yy) for x, yy in parts]
    (X_tr, y_tr), (X_va, y_va), (X_te, y_te) = [(np.ascontiguousarray(x, np.float32), yy.astype(np.int64))
                                                for x, yy in parts]
    pipeline = {
        "dataset": data.name,
        "source": list(data.source),
        "ragged": data.ragged,
        "protocol": protocol,
        "seed": seed,
        "val_fraction": float(val_fraction) if protocol == "archive" else None,
        "n_pool": int(n_pool),
        "n_duplicates": int(n_dup),
        "sizes": {"train": len(y_tr), "val": len(y_va), "test": len(y_te)},
        "n_classes": data.n_classes,
        "class_names": list(data.class_names),
        "time_channel": bool(time),
        "raw_shape": [data.length, data.channels],
    }
    return Split(
        name=data.name, protocol=protocol, seed=seed, time=bool(time), class_names=data.class_names,
        X_train=X_tr, y_train=y_tr, X_val=X_va, y_val=y_va, X_test=X_te, y_test=y_te,
        idx_train=idx_train.astype(np.int64), idx_val=idx_val.astype(np.int64),
        idx_test=idx_test.astype(np.int64), pool_index=pool_index, n_pool=int(n_pool),
        n_duplicates=int(n_dup), pipeline=pipeline,
    )


# --------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------
def _channel_stats(x: np.ndarray, block: int = 64):
    """Per-channel mean and (population) std over cases and time, in float64, block by block."""
    n = x.shape[0] * x.shape[1]
    total = np.zeros(x.shape[2])
    for i in range(0, len(x), block):
        total += x[i:i + block].sum(axis=(0, 1), dtype=np.float64)
    mean = total / n
    sq = np.zeros(x.shape[2])
    for i in range(0, len(x), block):
        sq += np.square(x[i:i + block].astype(np.float64) - mean).sum(axis=(0, 1))
    return mean, np.sqrt(sq / n)


def _standardized(x: np.ndarray, first: int, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, :, first:] -= mean.astype(np.float32)
    out[:, :, first:] /= scale.astype(np.float32)
    return out


def prepare(s: Split, *, reshape: str = "none", chunk: int = 1, order: str = "time",
            pad: bool = False, standardize: bool = False) -> Split:
    """Standardise (optional) and reshape the inputs of a split; returns a new ``Split``.

    Standardisation, if asked for, comes first and works per original channel: mean and standard
    deviation over the training cases and time steps, applied to all three parts; the time channel
    (if ``s.time``) is left unchanged and a constant channel (std 0) is only centred. Reshaping
    (``lib.reshape.reshape_input(x, reshape, chunk, order=order, pad=pad)``) follows. The
    returned split's ``pipeline`` extends the input's with ``"standardize"``, ``"reshape"`` and
    ``"input_shape"``; a split can be prepared only once.
    """
    if not isinstance(s, Split):
        raise ValueError(f"prepare expects a Split from split(), got {type(s)}")
    if "reshape" in s.pipeline:
        raise ValueError("this split has already been prepared; call prepare on the output of split()")
    Xs = [s.X_train, s.X_val, s.X_test]
    std_record = False
    if standardize:
        first = 1 if s.time else 0
        mean, std = _channel_stats(s.X_train[:, :, first:])
        scale = np.where(std > 0, std, 1.0)
        Xs = [_standardized(x, first, mean, scale) for x in Xs]
        std_record = {"fit_on": "train", "per": "original channel", "before_reshape": True,
                      "time_channel_left_unchanged": bool(s.time),
                      "mean": mean.tolist(), "std": std.tolist()}
    Xs = [np.ascontiguousarray(reshape_input(x, reshape, chunk, order=order, pad=pad)) for x in Xs]
    pipeline = dict(s.pipeline)
    pipeline["standardize"] = std_record
    pipeline["reshape"] = {"method": reshape, "chunk": int(chunk), "order": order, "pad": bool(pad)}
    pipeline["input_shape"] = [int(n) for n in Xs[0].shape[1:]]
    return dataclasses.replace(s, X_train=Xs[0], X_val=Xs[1], X_test=Xs[2], pipeline=pipeline)
