"""Which data sets there are: the grid's data-set registry (``DATASETS``: name -> ``DataSpec``) and
where the loader finds their files (``data_folders``, ``available_datasets``). No JAX, no sktime.

    python -m lib.datasets --list        # the registry's names, one per line (tools/copy_grid.sh)
    python -m lib.datasets --available   # the data sets lib.data.load_uea can read here

Adding a data set to the grids is one ``DataSpec`` entry; loading, splitting and preparing it is
``lib.data`` (which re-exports the finding functions below).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

__all__ = ["DataSpec", "DATASETS", "PAPER_DATASETS", "ENV_UEA_DIR", "ENV_DATA_DIR", "data_folders",
           "available_datasets", "check_name"]


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DataSpec:
    """How a data set is reshaped in the grid: ``kind`` low → timestep concatenation, high → rechunk."""

    name: str
    kind: str  # "low" | "high"
    chunks: tuple  # candidate chunk sizes (concat: timesteps; rechunk: values per row)
    paper: bool  # one of the Looped SSMs paper's six benchmarks
    channels: int  # C of the published data (for rechunk sizes in timestep units)

    @property
    def reshape(self) -> str:
        return "concat" if self.kind == "low" else "rechunk"


#: The main table's data sets. Chunks divide T (concat) or T·C (rechunk) so no padding is needed.
DATASETS = {
    "SelfRegulationSCP1": DataSpec("SelfRegulationSCP1", "low", (2, 4, 8, 16), True, 6),       # T 896, C 6
    "MotorImagery": DataSpec("MotorImagery", "high", (16, 32, 64, 128), True, 64),              # T 3000, C 64
    "SelfRegulationSCP2": DataSpec("SelfRegulationSCP2", "low", (2, 4, 8, 16), True, 7),       # T 1152, C 7
    "NATOPS": DataSpec("NATOPS", "high", (8, 12, 36, 72), False, 24),                           # T 51, C 24
    "FingerMovements": DataSpec("FingerMovements", "high", (20, 56, 100), False, 28),            # T 50, C 28
    "UWaveGestureLibrary": DataSpec("UWaveGestureLibrary", "low", (3, 5, 9, 15), False, 3),    # T 315, C 3
    "Handwriting": DataSpec("Handwriting", "low", (2, 4, 8), False, 3),                         # T 152, C 3
}
#: The paper's six; those not in ``DATASETS`` cannot be obtained offline here (see the book).
PAPER_DATASETS = ("EigenWorms", "EthanolConcentration", "Heartbeat", "MotorImagery", "SelfRegulationSCP1",
                  "SelfRegulationSCP2")


# --------------------------------------------------------------------------------------------
# where the files are
# --------------------------------------------------------------------------------------------
ENV_UEA_DIR = "LOOPED_SSM_UEA_DIR"
ENV_DATA_DIR = "LOOPED_SSM_DATA_DIR"

_REPO_ROOT = Path(__file__).resolve().parents[1]
_HOW_TO_POINT = (
    f"pass folder=... or set {ENV_UEA_DIR} to a folder holding the UEA archive's "
    f"NAME_TRAIN.ts/NAME_TEST.ts files (as unpacked from Multivariate2018_ts.zip), or "
    f"{ENV_DATA_DIR} to a folder of NAME.npz files (format: shared/data/uea/MANIFEST.md)"
)


def data_folders(folder=None) -> list:
    """The folders ``load_uea`` searches, in order (only existing ones, except an explicit one).

    An environment variable (``LOOPED_SSM_UEA_DIR``, ``LOOPED_SSM_DATA_DIR``) set to something that is
    not a folder is a ``FileNotFoundError``: a typo there would otherwise fall back to other data."""
    if folder is not None:
        return [Path(folder)]
    candidates = []
    for var in (ENV_UEA_DIR, ENV_DATA_DIR):
        if os.environ.get(var):
            if not Path(os.environ[var]).is_dir():
                raise FileNotFoundError(f"${var} is set to {os.environ[var]}, which is not a folder; "
                                        f"point it at the data or unset it")
            candidates.append(Path(os.environ[var]))
    for base in (_REPO_ROOT, *_REPO_ROOT.parents):
        candidates.append(base / "shared" / "data" / "uea")
    seen, out = set(), []
    for c in candidates:
        key = str(c.resolve()) if c.exists() else str(c)
        if c.is_dir() and key not in seen:
            seen.add(key)
            out.append(c)
    return out


def _ts_pair(folder: Path, name: str):
    """``(train, test)`` paths of a ``.ts`` pair in ``folder`` or ``folder/name``; None if absent.

    Raises FileNotFoundError when exactly one of the two files is there.
    """
    for d in (folder, folder / name):
        train, test = d / f"{name}_TRAIN.ts", d / f"{name}_TEST.ts"
        if train.is_file() and test.is_file():
            return train, test
        if train.is_file() or test.is_file():
            have, missing = (train, test) if train.is_file() else (test, train)
            raise FileNotFoundError(f"{name}: found {have} but not {missing}; both files are needed")
    return None


def _names_in(folder: Path) -> set:
    names = {p.stem for p in folder.glob("*.npz")}
    for p in list(folder.glob("*_TRAIN.ts")) + list(folder.glob("*/*_TRAIN.ts")):
        name = p.name[: -len("_TRAIN.ts")]
        if (p.parent / f"{name}_TEST.ts").is_file():
            names.add(name)
    return names


def available_datasets(folder=None) -> list:
    """Names of the data sets ``load_uea`` can read from ``folder`` (or from all default folders)."""
    if folder is not None and not Path(folder).is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    names = set()
    for f in data_folders(folder):
        names |= _names_in(f)
    return sorted(names)


def check_name(name) -> str:
    """``name`` if it is a data set name: a non-empty string without a path separator or ``..`` (it
    becomes part of file names in the data and checkpoint folders); ValueError otherwise."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"data set name must be a non-empty string, got {name!r}")
    if "/" in name or "\\" in name or os.sep in name or ".." in name or name.startswith(".") or "\0" in name:
        raise ValueError(f"data set name must be a plain name such as BasicMotions (no path separator, "
                         f"no '..', no leading dot), got {name!r}")
    return name


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.datasets", description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--list", action="store_true", help="the registry's data set names, one per line")
    what.add_argument("--available", action="store_true",
                      help="the data sets found in the data folders (lib.data.load_uea), one per line")
    a = p.parse_args(argv)
    names = list(DATASETS) if a.list else available_datasets()
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
