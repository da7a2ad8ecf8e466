"""What a configuration costs on this CPU, in core-seconds at its step cap.

Seconds per seed-step = ``OVERHEAD_S`` + b[ssm] × depth × T' (``shared/notes/budget-protocol.md``),
with b fitted on the records (``cost_model``), T' the model
input's length (``input_length``, from the data's raw shape), and a configuration's expected
core-seconds at its step cap (``cost_s``). The budget grid orders its runs by it (``lib.grid``).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["OVERHEAD_S", "B_PRIOR", "raw_shape", "input_length", "cost_model", "cost_s", "stop_share", "protocol_estimate"]


#: seconds per seed-step = OVERHEAD_S + b[ssm] × depth × T' (``shared/notes/budget-protocol.md``);
#: ``cost_model`` refits b on the records; these are the note's fits, used for an SSM without CPU records
OVERHEAD_S = 5e-4
B_PRIOR = {"s5": 138e-6, "lru": 210e-6, "linoss-im": 440e-6, "linoss-imex": 440e-6, "lrcssm": 79e-6}


def raw_shape(name: str, ragged: str = "error") -> tuple:
    """``(n_cases, T, C)`` of a data set's published train + test parts, read from the ``.npz`` headers
    (nothing loaded); ``.ts`` sets are loaded (with the loader's ``ragged`` policy)."""
    import zipfile

    import numpy as np

    from lib import data as D

    for folder in D.data_folders():
        path = Path(folder) / f"{name}.npz"
        if path.exists():
            shapes = {}
            with zipfile.ZipFile(path) as z:
                for part in ("X_train", "X_test"):
                    with z.open(f"{part}.npy") as f:
                        major, _ = np.lib.format.read_magic(f)
                        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                        shapes[part] = read(f)[0]
            return (shapes["X_train"][0] + shapes["X_test"][0], *shapes["X_train"][1:])
    d = D.load_uea(name, ragged=ragged)
    return (len(d.X_train) + len(d.X_test), d.length, d.channels)


def input_length(spec) -> int:
    """T', the model input's length after reshaping (``lib.reshape``), from the raw shape."""
    import math

    _, T, C = raw_shape(spec.dataset, spec.ragged)
    if spec.reshape == "none":
        return T
    total = T if spec.reshape == "concat" else T * C
    return math.ceil(total / spec.chunk) if spec.pad else total // spec.chunk


def core_s(record) -> float:
    """The core-seconds a record's program used: its ``cpu_s`` where the run counted it, else its
    ``wall_s`` (on a machine that ran other work beside it, wall time overstates the cost)."""
    cpu = record.get("cpu_s")  # None, or NaN in a row of a table that mixes both kinds of record
    return float(record["wall_s"] if cpu is None or cpu != cpu else cpu)


#: the cost model reads an SSM's newest programs only: the code's speed changes (issue 18 halved it)
RECENT_PROGRAMS = 8


def cost_model(records=()) -> dict:
    """SSM → b (seconds per layer·timestep of one seed-step), the median over the ``RECENT_PROGRAMS``
    newest (by ``created``) CPU programs of the records of (``core_s`` − compile) / seed-steps −
    ``OVERHEAD_S``, divided by depth × T'; ``B_PRIOR`` where an SSM has no CPU records."""
    import numpy as np

    programs = {}
    for r in records:
        if r.get("device") != "cpu" or r.get("ssm") not in B_PRIOR or not r.get("steps"):
            continue
        k = (r["ssm"], r["command"], r["created"], r.get("wall_s"))
        programs.setdefault(k, {})[r.get("seed")] = r  # a record read twice (two globs) counts once
    per = {}
    for (ssm, _, created, _), by_seed in sorted(programs.items(), key=lambda kv: str(kv[0][2])):
        rs = list(by_seed.values())
        seed_steps = sum(r["steps"] for r in rs)
        t = (core_s(rs[0]) - rs[0]["compile_s"]) / seed_steps
        per.setdefault(ssm, []).append((t - OVERHEAD_S) / (rs[0]["depth"] * rs[0]["seq_len"]))
    return {ssm: float(np.median(per[ssm][-RECENT_PROGRAMS:])) if ssm in per else b for ssm, b in B_PRIOR.items()}


def cost_s(spec, b: dict, steps: float | None = None) -> float:
    """Expected core-seconds of a configuration at its step cap (early stopping only lowers it), or
    after ``steps`` steps per seed where given."""
    per_step = OVERHEAD_S + b[spec.ssm] * spec.blocks * spec.loops * input_length(spec)
    return per_step * (spec.train_config().max_steps if steps is None else steps) * len(spec.seeds)


def left_h(spec, b: dict, share: dict) -> tuple:
    """A configuration's core-hours ``(at its step cap, expected)``: ``cost_s`` and that times the share
    of the cap its SSM's records stopped at on average (``stop_share``; the cap where it has none)."""
    caps = cost_s(spec, b) / 3600
    return caps, caps * share.get(spec.ssm, 1.0)


def _trained(records, profile: str):
    """The ``profile`` records of an SSM the cost model knows that say how many steps they trained."""
    return (r for r in records if r.get("profile") == profile and r.get("ssm") in B_PRIOR and r.get("steps"))


def stop_share(records, profile: str) -> dict:
    """SSM → the mean share of its step cap at which the ``profile`` records' seeds stopped (early
    stopping ends many before the cap): what a configuration of that SSM left to run is expected to
    use of ``cost_s``'s bound. SSMs without such records are absent (take 1: the cap)."""
    per = {}
    for r in _trained(records, profile):
        if r.get("max_steps"):
            per.setdefault(r["ssm"], []).append(min(1.0, r["steps"] / r["max_steps"]))
    return {ssm: sum(v) / len(v) for ssm, v in per.items()}


def protocol_estimate(specs, records, profile: str) -> dict:
    """What ``specs`` (a grid of ``profile``) would cost on this CPU if each seed trained as long as the
    ``profile`` records of the trained SSMs did on average (early stopping ends them well before their
    cap): ``core_h`` in all, ``share`` per data set (fractions, largest first), ``steps`` (the mean steps
    per seed used, NaN without such records), ``n_records`` it is the mean of, and ``b`` (``cost_model``)."""
    import math

    records = list(records)
    steps = [r["steps"] for r in _trained(records, profile)]
    mean = sum(steps) / len(steps) if steps else math.nan
    b = cost_model(records)
    by = {}
    for spec in specs:
        by[spec.dataset] = by.get(spec.dataset, 0.0) + cost_s(spec, b, mean) / 3600
    total = sum(by.values())
    share = {k: v / total for k, v in sorted(by.items(), key=lambda kv: -kv[1])} if total else {}
    return dict(core_h=total, share=share, steps=mean, n_records=len(steps), b=b)
