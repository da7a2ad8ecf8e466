"""A UEA data set's files read into arrays: the ``.npz`` format and the archive's ``.ts`` pairs, checked.

``lib.data.load_uea`` finds the files (``lib.datasets``) and calls ``_load_npz`` or ``_load_ts_pair``,
which return a ``UEAData``: labels sorted as scikit-learn's ``LabelEncoder`` sorts them, ragged lengths
padded or truncated as asked, NaN/inf and bad labels refused (the rules: ``lib.data``'s docstring).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

__all__ = ["UEAData"]


@dataclass(frozen=True, eq=False)
class UEAData:
    """A data set as published: ``X_*`` float32 ``(N, T, C)``, ``y_*`` int64 in ``0..K-1``.

    ``class_names[k]`` is the label string of class ``k`` (sorted, see the module docstring).
    ``lengths_*`` are the true series lengths (all ``T`` unless the set is ragged); ``ragged`` says
    what was done about unequal lengths (``None`` when there were none, else ``"pad"`` or
    ``"truncate"``). ``source`` lists the file(s) read.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    source: tuple
    lengths_train: np.ndarray
    lengths_test: np.ndarray
    ragged: Optional[str] = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def length(self) -> int:
        return int(self.X_train.shape[1])

    @property
    def channels(self) -> int:
        return int(self.X_train.shape[2])


def _sorted_labels(names) -> tuple:
    """Label strings in LabelEncoder order (np.unique sorts strings by code point)."""
    return tuple(str(s) for s in np.unique(np.asarray(names, dtype=str)))


def _check_finite(name: str, **arrays):
    """Refuse NaN/inf; each array is (N, T, C) or a list of (T_i, C) cases."""
    for part, x in arrays.items():
        per_case = np.array([np.count_nonzero(~np.isfinite(c)) for c in x], np.int64)
        if per_case.any():
            cases = np.flatnonzero(per_case)
            raise ValueError(
                f"{name}: {int(per_case.sum())} NaN/infinite values in {part} (cases "
                f"{cases[:10].tolist()}{' ...' if len(cases) > 10 else ''}); missing values are "
                f"not supported, impute or drop those cases first"
            )


def _apply_ragged(name, parts, lengths, ragged, pad_mode):
    """Bring ragged cases to one length; ``parts`` are lists of (T_i, C) arrays or (N, T, C) arrays."""
    lo = min(int(l.min()) for l in lengths)
    hi = max(int(l.max()) for l in lengths)
    if ragged == "error":
        raise ValueError(
            f"{name}: ragged lengths are not supported (series lengths {lo}..{hi}); pad or "
            f"truncate first, or pass ragged='pad' (repeat the last observation up to {hi}) or "
            f"ragged='truncate' (cut to {lo})"
        )
    out = []
    for cases in parts:
        if ragged == "truncate":
            out.append(np.stack([c[:lo] for c in cases]).astype(np.float32))
        elif pad_mode == "stored":  # npz: already padded by repeating the last observation
            out.append(np.stack(list(cases)).astype(np.float32))
        else:
            out.append(np.stack([np.concatenate([c, np.repeat(c[-1:], hi - len(c), axis=0)])
                                 for c in cases]).astype(np.float32))
    return out


def _check_labels(name: str, path: Path, part: str, y: np.ndarray, n: int, k: int) -> None:
    """``y`` must be ``n`` integer class codes in ``0..k-1`` (one per case): anything else would shift or
    wrap labels silently (a label -1 indexes the last class; a longer ``y`` misaligns the concatenated pool)."""
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"{name}: {part} in {path} has shape {y.shape}, but X_{part.split('_')[1]} has {n} cases "
                         f"(one label per case)")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: {part} in {path} must hold integer class codes, got dtype {y.dtype}")
    if n and (y.min() < 0 or y.max() >= k):
        bad = np.flatnonzero((y < 0) | (y >= k))
        raise ValueError(f"{name}: {part} in {path} has labels outside 0..{k - 1} (the {k} class_names): "
                         f"{sorted(set(y[bad].tolist()))[:10]} at cases {bad[:10].tolist()}")


def _load_npz(name: str, path: Path, *, ragged: str) -> UEAData:
    import zipfile

    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # np.load would read anything else as a .npy or a pickle
            raise ValueError(f"{name}: {path} is not a readable .npz file (empty, or not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files if k in ("X_train", "y_train", "X_test", "y_test", "class_names",
                                                          "lengths_train", "lengths_test")}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:  # empty, truncated, not a zip
        raise ValueError(f"{name}: {path} is not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("X_train", "y_train", "X_test", "y_test", "class_names") if k not in arrays]
    if missing:
        raise ValueError(f"{name}: {path} lacks the arrays {missing} (format: MANIFEST.md)")
    X_train, X_test = arrays["X_train"], arrays["X_test"]
    y_train, y_test = arrays["y_train"], arrays["y_test"]
    stored_names = [str(s) for s in arrays["class_names"]]
    len_train, len_test = arrays.get("lengths_train"), arrays.get("lengths_test")
    for part, x in (("X_train", X_train), ("X_test", X_test)):
        if x.ndim != 3:
            raise ValueError(f"{name}: {part} in {path} has shape {x.shape}, expected (N, T, C)")
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(f"{name}: train cases are {X_train.shape[1:]} but test cases {X_test.shape[1:]}")
    _check_finite(name, X_train=X_train, X_test=X_test)
    T = X_train.shape[1]
    K = len(stored_names)
    for part, y, x in (("y_train", y_train, X_train), ("y_test", y_test, X_test)):
        _check_labels(name, path, part, y, len(x), K)
    for part, lengths, x in (("lengths_train", len_train, X_train), ("lengths_test", len_test, X_test)):
        if lengths is None:
            continue
        if lengths.ndim != 1 or len(lengths) != len(x) or not np.issubdtype(lengths.dtype, np.integer):
            raise ValueError(f"{name}: {part} in {path} must be {len(x)} integers (one per case of "
                             f"X_{part.split('_')[1]}), got {lengths.dtype} {lengths.shape}")
        if len(lengths) and (lengths.min() < 1 or lengths.max() > T):
            raise ValueError(f"{name}: {part} in {path} must lie in 1..{T} (the stored length), got "
                             f"{int(lengths.min())}..{int(lengths.max())}")
    len_train = np.full(len(X_train), T, np.int64) if len_train is None else len_train.astype(np.int64)
    len_test = np.full(len(X_test), T, np.int64) if len_test is None else len_test.astype(np.int64)
    applied = None
    if (len_train != T).any() or (len_test != T).any():
        X_train, X_test = _apply_ragged(name, (X_train, X_test), (len_train, len_test), ragged, "stored")
        applied = ragged
    class_names = _sorted_labels(stored_names)
    remap = np.array([class_names.index(s) for s in stored_names], dtype=np.int64)
    return UEAData(
        name=name,
        X_train=np.ascontiguousarray(X_train, np.float32), y_train=remap[y_train],
        X_test=np.ascontiguousarray(X_test, np.float32), y_test=remap[y_test],
        class_names=class_names, source=(str(path),),
        lengths_train=len_train, lengths_test=len_test, ragged=applied,
    )


def _ts_header_labels(path: Path) -> list:
    """The ``@classLabel`` values of a ``.ts`` header, in their original spelling."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            low = line.strip().lower()
            if low.startswith("@classlabel"):
                return line.split()[2:]
            if low.startswith("@data"):
                break
    return []


def _read_ts(path: Path):
    """``(cases, labels)``: a list of (T_i, C) float32 arrays, or one (N, T, C) array, and labels."""
    import warnings

    from sktime.datasets import load_from_tsfile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            try:
                X, y = load_from_tsfile(str(path), return_data_type="numpy3D")
                return np.transpose(X, (0, 2, 1)).astype(np.float32), np.asarray(y, dtype=str)
            except ValueError:  # unequal lengths cannot form a numpy3D array
                df, y = load_from_tsfile(str(path), return_data_type="nested_univ")
        except (OSError, ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError) as e:
            # sktime's messages (``empty file``, ``inconsistent number of dimensions``) do not name the file
            raise ValueError(f"{path} is not a readable .ts file: {e} (a missing label, a truncated line, "
                             f"an empty file?)") from None
    cases = []
    for i in range(len(df)):
        chans = [np.asarray(df.iat[i, c], dtype=np.float64) for c in range(df.shape[1])]
        if len({len(c) for c in chans}) != 1:
            raise ValueError(f"{path}: case {i} has channels of different lengths "
                             f"{sorted({len(c) for c in chans})}; not supported")
        cases.append(np.stack(chans, axis=1).astype(np.float32))
    return cases, np.asarray(y, dtype=str)


def _load_ts_pair(name: str, train: Path, test: Path, *, ragged: str) -> UEAData:
    (X_train, lab_train), (X_test, lab_test) = _read_ts(train), _read_ts(test)
    len_train = np.array([len(c) for c in X_train], np.int64)
    len_test = np.array([len(c) for c in X_test], np.int64)
    channels = {c.shape[-1] for c in list(X_train[:1]) + list(X_test[:1])}
    if len(channels) != 1:
        raise ValueError(f"{name}: train and test have different channel counts {sorted(channels)}")
    _check_finite(name, X_train=X_train, X_test=X_test)
    applied = None
    if len(set(len_train) | set(len_test)) > 1:
        X_train, X_test = _apply_ragged(name, (X_train, X_test), (len_train, len_test), ragged, "repeat")
        applied = ragged
    # sktime lower-cases every line; restore the header's spelling so the sort matches arff/LabelEncoder
    header = _ts_header_labels(train)
    spelling = {}
    for s in header:
        if spelling.setdefault(s.lower(), s) != s:
            raise ValueError(f"{name}: class labels {spelling[s.lower()]!r} and {s!r} differ only in case")
    if header:
        for path, labs in ((train, lab_train), (test, lab_test)):
            unknown = sorted({s for s in labs if s.lower() not in spelling})
            if unknown:
                raise ValueError(f"{name}: {path} has class labels {unknown[:10]} that its @classLabel header "
                                 f"{header} does not list")
    lab_train = [spelling.get(s, s) for s in lab_train]
    lab_test = [spelling.get(s, s) for s in lab_test]
    class_names = _sorted_labels(lab_train + lab_test)
    code = {s: k for k, s in enumerate(class_names)}
    return UEAData(
        name=name,
        X_train=np.ascontiguousarray(X_train, np.float32),
        y_train=np.array([code[s] for s in lab_train], np.int64),
        X_test=np.ascontiguousarray(X_test, np.float32),
        y_test=np.array([code[s] for s in lab_test], np.int64),
        class_names=class_names, source=(str(train), str(test)),
        lengths_train=len_train, lengths_test=len_test, ragged=applied,
    )
