"""The training profiles: one home for their names and settings (no JAX; ``lib.train``, ``lib.run``,
``lib.grid``, ``lib.results`` and the chapters import them from here).

``full``   the peers' protocol (Adam at the SSM's constant rate, batch 32, H = P = 64, evaluate every
           1000 steps, patience 10) with the step cap lowered from 100k to 30k (their runs stopped early
           at 12k–27k steps on average, ``reproduction-protocol.md`` §9). Thousands of core-hours for the
           whole grid on a 2-core CPU (``lib.cost.protocol_estimate``): the profile for a GPU.
``budget`` a truncation of ``full``, not a new recipe: the same everything except evaluate every 250
           steps, patience 4 evaluations, and stop at 3,000 steps (6,000 for the SSMs whose rate is
           1e-4: ``MAX_STEPS_BY_SSM``). Its runs are the first steps of the matching full runs; the
           Experiments chapter's calibration shows what the truncation costs. Sized on this CPU
           (``shared/notes/budget-protocol.md``).
``smoke``  minutes on a 2-core CPU; numbers from it check that the pipeline runs, they are not results.
"""
from __future__ import annotations

from lib.ssm import SSMS, ssm_spec

PROFILES = {
    "full": dict(max_steps=30_000, eval_every=1000, patience=10, hidden=64, state=64),
    "budget": dict(max_steps=3_000, eval_every=250, patience=4, hidden=64, state=64),
    "smoke": dict(max_steps=300, eval_every=50, patience=3, hidden=16, state=16),
}
#: per-SSM step caps that replace a profile's ``max_steps`` (the SSMs trained at 1e-4 get twice the
#: steps), from the registry's ``SSMSpec.max_steps`` (``max_steps`` reads the registry itself)
MAX_STEPS_BY_SSM = {p: {n: s.max_steps[p] for n, s in SSMS.items() if p in s.max_steps} for p in PROFILES}
MAX_STEPS_BY_SSM = {p: caps for p, caps in MAX_STEPS_BY_SSM.items() if caps}
#: the profile names, in the order pages list them
PROFILE_NAMES = tuple(PROFILES)
#: the profiles whose numbers are results (smoke runs are pipeline checks)
RESULT_PROFILES = ("full", "budget")


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILE_NAMES)}, got {name!r}")
    return name


def max_steps(profile: str, ssm: str) -> int:
    """The step cap of ``profile`` for ``ssm``."""
    return ssm_spec(ssm).max_steps.get(check_profile(profile), PROFILES[profile]["max_steps"])
