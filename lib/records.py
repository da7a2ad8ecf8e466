"""Run records' files (one job: where records live): locked, atomic JSONL appends, reading, resume
and merge. What a record is (its format, checks and keys) is ``lib.schema``, re-exported here.

Run records (JSON Lines, atomic, resumable) and what the book reads from them.

One record = one trained model = one JSON object on one line of a ``.jsonl`` file::

    from lib import results as R
    R.append_records("data/results/main-full.jsonl", [rec])   # validated, atomic, concurrent-safe
    df = R.read_records("data/results/*.jsonl")               # DataFrame, versions flattened
    todo = R.missing(configs, "data/results/main-full.jsonl") # resume: configs not yet recorded
    R.summarize(df)                                           # mean ± std over seeds, in points
    R.paired_differences(df, a=dict(blocks=1, loops=6), b=dict(blocks=6, loops=1))

Schema, identity and resume: see ``lib.schema``.

Atomicity
    ``append_records`` validates everything first (nothing is written if one record is bad), then,
    holding an exclusive ``flock`` on the file's directory (so concurrent writers queue instead of
    losing each other's lines), reads the existing lines, writes old + new lines to a temporary file
    in the same directory, ``fsync``s it and ``os.replace``s it over the target. A writer killed at
    any moment leaves either the old file or the new one, never a partial line. A temporary file a
    killed writer left behind (``.NAME.*.tmp``) is removed by the next writer.
"""
from __future__ import annotations

import contextlib
import fcntl
import glob as _glob
import json
import os
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from lib.schema import *  # noqa: F401,F403  (the format: one home, lib.schema)
from lib.schema import (  # noqa: F401  (used below)
    FIELDS, KEY_FIELDS, VERSION_KEYS, normalize_record, record_key, validate_record, with_key_columns)
from lib.schema import __all__ as _schema_all

__all__ = [*_schema_all, "append_records", "read_records", "records_frame", "iter_records", "as_rows", "done_keys", "missing", "merge"]


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _dir_lock(directory: Path):
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _parse_lines(path: Path, text: str, validate: bool):
    """(line number, record) for each non-blank line; ValueError 'file:line: why' otherwise."""
    out = []
    lines = text.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if i == len(lines) and not text.endswith("\n"):
            raise ValueError(f"{path}:{i}: last line has no newline (a partial write?)")
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path}:{i}: a record must be a JSON object, got "
                             f"{type(rec).__name__}")
        if validate:
            try:
                validate_record(rec)
            except ValueError as e:
                raise ValueError(f"{path}:{i}: {e}") from None
        out.append((i, rec))
    return out


def _read_file(path: Path, validate: bool = True):
    return _parse_lines(path, path.read_text(encoding="utf-8"), validate)


def _dumps(rec: dict) -> str:
    return json.dumps(rec, allow_nan=False, ensure_ascii=False, separators=(", ", ": "))


def append_records(path, records, *, on_duplicate: str = "replace") -> int:
    """Validate ``records`` (all of them, before anything is written), then add them to the
    JSON Lines file ``path`` atomically (module docstring). Returns how many records were written.

    ``on_duplicate``: what to do with a record whose ``record_key`` is already in the file (or
    earlier in ``records``): ``"replace"`` the old line (default), ``"skip"`` the new record, or
    ``"error"``. The file and its directory are created if needed; an existing file that does not
    parse is never overwritten (``ValueError`` naming file:line). A file or folder that is read-only
    (for this user, or with no write permission bit at all) is a ``PermissionError``, and the file
    keeps its permission bits (a new file gets the usual ones, 0666 less the umask)."""
    if on_duplicate not in ("replace", "skip", "error"):
        raise ValueError(f"on_duplicate must be 'replace', 'skip' or 'error', got {on_duplicate!r}")
    if isinstance(records, Mapping):
        records = [records]
    checked = []
    for i, rec in enumerate(records):
        try:
            checked.append(validate_record(rec))
        except ValueError as e:
            raise ValueError(f"record {i}: {e}") from None
    lines = [_dumps(r) for r in checked]
    path = Path(path)

    def read_only(p: Path) -> bool:  # as root os.access says yes to everything: the mode bits count too
        return not (os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)) and os.stat(p).st_mode & 0o222)

    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a records file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise NotADirectoryError(f"cannot write {path}: part of its folder path is a file") from None
    if read_only(path.parent):
        raise PermissionError(f"cannot write {path}: its folder {path.parent} is read-only")
    with _dir_lock(path.parent):
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()  # left by a killed writer; we hold the lock, so nobody owns it
        existing = []  # (key, line)
        mode = None  # the permission bits to keep
        if path.exists():
            if read_only(path):
                raise PermissionError(f"{path} is read-only; nothing was written (make it writable, e.g. "
                                      f"chmod u+w, or write the records elsewhere)")
            mode = os.stat(path).st_mode & 0o7777
            for _, rec in _read_file(path, validate=False):
                existing.append((record_key(rec), _dumps(rec)))
        index = {k: j for j, (k, _) in enumerate(existing)}
        written = 0
        for rec, line in zip(checked, lines):
            k = record_key(rec)
            if k in index:
                if on_duplicate == "error":
                    raise ValueError(f"a record with key {dict(zip(KEY_FIELDS, k))} is already in "
                                     f"{path}")
                if on_duplicate == "skip":
                    continue
                existing[index[k]] = (k, line)
            else:
                index[k] = len(existing)
                existing.append((k, line))
            written += 1
        tmp = path.parent / f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0666 less the umask, as open() does
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                if mode is not None:
                    os.fchmod(fh.fileno(), mode)
                fh.write("".join(line + "\n" for _, line in existing))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return written


def _paths(path_or_glob) -> list:
    if isinstance(path_or_glob, (list, tuple)):
        out = []
        for p in path_or_glob:
            out.extend(_paths(p))
        return out
    s = str(path_or_glob)
    if any(c in s for c in "*?["):
        return [Path(p) for p in sorted(_glob.glob(s))]
    return [Path(s)] if Path(s).exists() else []


def iter_records(path_or_glob, *, validate: bool = True) -> list:
    """The records (dicts) of one file, a glob or a list of them; missing files give nothing."""
    return [rec for p in _paths(path_or_glob) for _, rec in _read_file(p, validate)]


def _columns() -> list:
    cols = []
    for f in FIELDS:
        if f == "versions":
            cols.extend(f"versions_{k}" for k in VERSION_KEYS)
        else:
            cols.append(f)
    return cols


def as_rows(records) -> list:
    """Records as a list of dicts, whether given as a DataFrame, a list or a generator (read once)."""
    return records.to_dict("records") if hasattr(records, "to_dict") else list(records)


def read_records(path_or_glob, *, validate: bool = True) -> pd.DataFrame:
    """All records of a file / glob / list of files as a DataFrame, one row per record, columns in
    ``FIELDS`` order (``versions`` flattened to ``versions_<name>``) then any extra fields. A
    missing file gives an empty frame with those columns; a corrupt or invalid line raises
    ``ValueError`` naming ``file:line``."""
    return records_frame(iter_records(path_or_glob, validate=validate))


def records_frame(records) -> pd.DataFrame:
    """Records already read (``iter_records``) as ``read_records``'s DataFrame."""
    rows = []
    for rec in records:
        row = {k: v for k, v in rec.items() if k != "versions"}
        for k, v in (rec.get("versions") or {}).items():
            row[f"versions_{k}"] = v
        rows.append(row)
    cols = _columns()
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    df = with_key_columns(pd.DataFrame(rows))
    extra = [c for c in df.columns if c not in cols]
    return df.reindex(columns=cols + extra)


def done_keys(path_or_glob) -> set:
    """The ``record_key`` of every record already in the file(s)."""
    return {record_key(r) for r in iter_records(path_or_glob, validate=False)}


def missing(configs: Iterable, path_or_glob) -> list:
    """The configs (dicts or objects with the ``KEY_FIELDS``) that have no record yet, in order."""
    done = done_keys(path_or_glob)
    return [c for c in configs if record_key(c) not in done]



# --------------------------------------------------------------------------------------------
# merge: records made elsewhere (a GPU machine's $OUT) into the committed files
# --------------------------------------------------------------------------------------------
def merge(sources, into, *, on_duplicate: str = "skip") -> tuple[int, int, list]:
    """Append every record of ``sources`` (paths or globs) to ``into``; returns ``(read, written,
    notes)``. All sources are read and validated before anything is written; a record whose key is
    already in ``into`` is kept as it is (``on_duplicate="skip"``) unless ``"replace"`` is asked for.

    ``notes``: one line per thing the caller should hear about, beyond the counts: source records
    already in ``into`` unchanged; conflicts (one key, different values, between ``into`` and a
    source or between two sources), each with the fields that differ and which record won; keys
    that ``into`` already holds more than once."""
    if on_duplicate not in ("replace", "skip"):
        raise ValueError(f"on_duplicate must be 'replace' or 'skip', got {on_duplicate!r}")
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    empty = [str(s) for s in sources if not _paths(s)]
    if empty:
        raise FileNotFoundError(f"no record file matches {empty}")
    found = [(f"{p}:{i}", rec) for p in _paths(sources) for i, rec in _read_file(p, validate=True)]
    recs = [rec for _, rec in found]

    def canon(v) -> str:
        return json.dumps(normalize_record({"v": v}), sort_keys=True)

    def same(a, b) -> bool:
        return canon(a) == canon(b)

    def describe(k) -> str:
        d = dict(zip(KEY_FIELDS, k))
        return (f"{d['dataset']} {d['ssm']} {d['blocks']}x{d['loops']} {d['reshape']}/{d['chunk']} "
                f"seed {d['seed']} profile {d['profile']} tag {d['tag']}")

    def differing(a, b) -> str:
        fields = [f for f in dict.fromkeys([*a, *b]) if canon(a.get(f)) != canon(b.get(f))]
        return ", ".join(fields[:6]) + (f" (+{len(fields) - 6} more)" if len(fields) > 6 else "")

    target = {}  # key -> [(where, record)]
    if Path(into).is_file():
        for i, rec in _read_file(Path(into), validate=False):
            try:
                target.setdefault(record_key(rec), []).append((f"{into}:{i}", rec))
            except ValueError:
                continue
    notes = []
    twice = {k: v for k, v in target.items() if len(v) > 1}
    if twice:
        notes.append(f"{into} already holds {len(twice)} key(s) more than once (not changed by the merge):")
        notes += [f"  {describe(k)}: lines {', '.join(w.rsplit(':', 1)[1] for w, _ in v)}" for k, v in twice.items()]
    kept = {k: v[-1] for k, v in target.items()}  # what a later record of the key meets
    identical, conflicts = 0, []
    for where, rec in found:
        k = record_key(rec)
        if k not in kept:
            kept[k] = (where, rec)
            continue
        old_where, old = kept[k]
        if same(old, rec):
            identical += 1
            continue
        winner = (where, rec) if on_duplicate == "replace" else (old_where, old)
        conflicts.append(f"  {describe(k)}: {old_where} vs {where} differ in {differing(old, rec)}; "
                         f"kept {winner[0]}")
        kept[k] = winner
    if identical:
        notes.append(f"{identical} record(s) already there unchanged (same key, same values)")
    if conflicts:
        notes.append(f"{len(conflicts)} conflict(s), same key but different values; "
                     + ("the later record replaced the earlier" if on_duplicate == "replace" else
                        "the record already there was kept (--replace takes the later one)") + ":")
        notes += conflicts
    return len(recs), append_records(into, recs, on_duplicate=on_duplicate), notes


