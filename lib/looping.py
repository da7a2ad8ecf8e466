"""What looping does: the depth schedule, the inclusion check, parameters vs depth, iterate dynamics,
test-time depth. The functions chapter ``looping`` calls; none of them trains anything.

Notation. A looped model with k unique blocks run for L loops applies ``k·L`` blocks; application
``a = i·k + j`` (``i = 0..L−1``, ``j = 0..k−1``) uses unique block j and produces the hidden sequence
``h_a`` of shape ``(B, T, H)``. ``model.iterates(x)`` returns all of them stacked, ``(k·L, B, T, H)``.
The *iterates of block j* are ``h^{(j)}_i = h_{i·k + j}``: what block j outputs on its i-th pass.

Iterate metrics (paper 001, Blayney et al. 2026, find that "each layer in the cycle converges to a
distinct fixed point"; the paper's exact metric was not found, these follow
``reproduction-protocol.md`` §6.1, an INFERENCE). With ``h_{b,t} ∈ R^H`` the hidden vector of case b at
time t, and every mean taken over the B·T vectors:

* relative change     ``r^{(j)}_i = mean_{b,t} ‖h^{(j)}_{i,b,t} − h^{(j)}_{i−1,b,t}‖ / ‖h^{(j)}_{i−1,b,t}‖``
* cosine similarity   ``c^{(j)}_i = mean_{b,t} ⟨h^{(j)}_{i,b,t}, h^{(j)}_{i−1,b,t}⟩ / (‖h^{(j)}_{i,b,t}‖ ‖h^{(j)}_{i−1,b,t}‖)``
* distance to last    ``d^{(j)}_i = mean_{b,t} ‖h^{(j)}_{i,b,t} − h^{(j)}_{L−1,b,t}‖ / ‖h^{(j)}_{L−1,b,t}‖``
* step change         ``s_a = mean_{b,t} ‖h_{a,b,t} − h_{a−1,b,t}‖ / ‖h_{a−1,b,t}‖`` between *consecutive
  applications* whatever their block.

A per-block fixed point shows as ``r → 0`` and ``c → 1``. A cycle (k > 1) shows as ``r^{(j)} → 0`` for
every block while the step change ``s`` between neighbouring applications stays large: the trajectory
visits k distinct points in turn. Caveat for residual blocks, ``h ← h + f(h)``: if ``‖h‖`` grows
linearly with depth, ``r`` decays like 1/i without any fixed point, so look at ``d`` and at the norm
(column ``norm``) too.

Trajectory classes (:func:`classify_trajectory`). The metrics above are *relative* to ``‖h‖``, which a
residual stream grows, so a falling ``r`` does not tell a fixed point from a drift. The classifier looks
at one trajectory of states ``h_0, h_1, …, h_n`` (each state flattened to one vector; for a trained
model :func:`model_trajectory` gives ``h_0 = E(u)``, the encoder output, then every application) through
numbers that do not depend on ``‖h‖``: the steps ``s_i = ‖h_i − h_{i−1}‖``, their ratios
``ρ_i = s_{i+1} / s_i``, the cosine between successive steps and, for a period p, the return distance
``q_p`` (``‖h_i − h_{i−p}‖`` over the largest step in between). It decides on the *tail*, the last
``max(2, ⌈m/2⌉)`` of the m ratios, so an early transient (the first application moves the encoder output
further than the later ones) does not decide. See :func:`classify_trajectory` for the criterion.

Test-time depth runs a trained model for ``n`` loops instead of the L it was trained with. Because every
application sees only the previous one, the first ``n·k`` iterates of a run with ``N ≥ n`` loops are the
iterates of a run with n loops, so one forward pass to the largest n gives the logits (``readout`` of
iterate ``n·k − 1``) of every smaller n.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lib.model import build_model, count_params, untie

__all__ = ["block_iterates", "iterate_metric_arrays", "iterate_metrics", "depth_sweep", "test_time_depth",
           "reinit", "inclusion_check", "params_vs_depth", "schedule_frame", "load_trained", "saved_models",
           "pick_saved", "loop_families", "EPS", "classify_trajectory", "classify_cases", "label_shares",
           "model_trajectory", "LABELS", "MIN_ITERATES", "STEP_TOL", "RHO_CONTRACT", "RHO_STEADY",
           "RHO_DIVERGE", "COS_DRIFT", "Q_CYCLE"]

#: added to every norm in a denominator, so an all-zero hidden vector gives a finite ratio
EPS = 1e-12


# ------------------------------------------------------------------------------------ iterate metrics
def block_iterates(states, blocks: int):
    """``(k·L, B, T, H)`` iterates -> ``(L, k, B, T, H)``: entry ``[i, j]`` is ``h^{(j)}_i``, the output of
    unique block j on loop i (application ``i·k + j``, the order of ``model.schedule()``)."""
    n = states.shape[0]
    if blocks < 1 or n % blocks:
        raise ValueError(f"{n} iterates cannot be split into loops of {blocks} blocks")
    return states.reshape((n // blocks, blocks) + tuple(states.shape[1:]))


def _rel(a, b):
    """``‖a − b‖ / ‖b‖`` per vector (last axis)."""
    return jnp.linalg.norm(a - b, axis=-1) / (jnp.linalg.norm(b, axis=-1) + EPS)


def _cos(a, b):
    """``⟨a, b⟩ / (‖a‖ ‖b‖)`` per vector (last axis)."""
    return jnp.sum(a * b, -1) / (jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + EPS)


@functools.partial(jax.jit, static_argnums=1)
def iterate_metric_arrays(states, blocks: int) -> dict:
    """The module docstring's metrics as arrays of shape ``(L, k)``, averaged over batch and time.

    ``states``: ``(k·L, B, T, H)`` from ``model.iterates``; ``blocks`` = k (static). Returns a dict with
    ``rel_change``, ``cosine`` (NaN on loop 0, which has no previous iterate of the same block),
    ``dist_to_last``, ``step_change`` (NaN for application 0: the encoder output is not among the
    iterates) and ``norm`` (mean ‖h‖). Entry ``[i, j]`` belongs to block j on loop i.
    """
    states = jnp.asarray(states, jnp.float32)
    it = block_iterates(states, blocks)                        # (L, k, B, T, H)
    L = it.shape[0]
    reduce = lambda v: v.reshape(v.shape[:2] + (-1,)).mean(-1)  # noqa: E731  mean over batch and time
    nan_row = jnp.full((1, blocks), jnp.nan, jnp.float32)
    rel = jnp.concatenate([nan_row, reduce(_rel(it[1:], it[:-1]))]) if L > 1 else nan_row
    cos = jnp.concatenate([nan_row, reduce(_cos(it[1:], it[:-1]))]) if L > 1 else nan_row
    last = reduce(_rel(it, it[-1:]))
    step = jnp.concatenate([jnp.full((1,), jnp.nan, jnp.float32),
                            _rel(states[1:], states[:-1]).reshape(states.shape[0] - 1, -1).mean(-1)])
    norm = reduce(jnp.linalg.norm(it, axis=-1))
    return dict(rel_change=rel, cosine=cos, dist_to_last=last, step_change=step.reshape(L, blocks), norm=norm)


def _frame(arrays: dict, blocks: int):
    """Tidy DataFrame from ``(L, k)`` metric arrays: one row per (loop, block)."""
    import pandas as pd

    arrays = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    L = next(iter(arrays.values())).shape[0]
    rows = []
    for i in range(L):
        for j in range(blocks):
            row = dict(block=j, loop=i + 1, application=i * blocks + j + 1)
            row.update({name: float(a[i, j]) for name, a in arrays.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def iterate_metrics(states, blocks: int):
    """Per unique block j and loop i: relative change, cosine similarity and distance to the last iterate
    of block j (module docstring), as a tidy ``pandas.DataFrame``.

    ``states`` is ``model.iterates(x)``, shape ``(k·L, B, T, H)``; ``blocks`` is k. Columns: ``block`` (j,
    0-based like ``model.schedule()``), ``loop`` (i + 1, so loop 1 is the first pass), ``application``
    (1-based position in depth, ``i·k + j + 1``), ``rel_change`` and ``cosine`` (NaN on loop 1),
    ``dist_to_last``, ``step_change`` (to the previous application, any block) and ``norm``.
    """
    return _frame(iterate_metric_arrays(jnp.asarray(states), int(blocks)), int(blocks))


# ------------------------------------------------------------------------------- trajectory classes
#: the labels of :func:`classify_trajectory`, in the order tables show them
LABELS = ("fixed point", "cycle", "drift", "diverging", "undecided")
#: fewest states h_0..h_n the classifier decides on (3 steps, 2 step ratios); shorter: ``undecided``
MIN_ITERATES = 4
#: last step relative to the last state, ``s_n / ‖h_n‖``, at or below which the trajectory has stopped
#: (a fixed point reached to float precision, where the step ratios are rounding noise)
STEP_TOL = 1e-5
#: tail step ratio (geometric mean) at or below which the steps contract: a fixed point ahead
RHO_CONTRACT = 0.8
#: steps of steady size: every tail step ratio within ``[1 / RHO_STEADY, RHO_STEADY]`` (drift); for a
#: cycle of period p, the ratio of each tail step to the step p before it. Outside it on every tail
#: ratio, the steps shrink (below) or grow (above) clearly, which a fixed point or divergence needs
RHO_STEADY = 1.1
#: tail step ratio (geometric mean) at or above which the steps grow: diverging
RHO_DIVERGE = 1.25
#: smallest cosine between successive tail steps for a drift: the step direction has converged
COS_DRIFT = 0.9
#: largest return distance ``q_p`` (tail) for a cycle of period p
Q_CYCLE = 0.25


def _tail_len(ratios: int) -> int:
    return max(2, math.ceil(ratios / 2))


def classify_trajectory(traj, periods=(2, 3)) -> dict:
    """Fixed point, cycle, drift, diverging or undecided: the class of one trajectory and its numbers.

    ``traj``: ``(n + 1, ...)``, state ``h_i = traj[i]`` flattened to one vector (a case's whole hidden
    sequence ``(T, H)``, or a whole test set ``(B, T, H)`` for a summary over cases). With the steps
    ``s_i = ‖h_i − h_{i−1}‖`` (i = 1..n) and their ratios ``ρ_i = s_{i+1} / s_i`` (m = n − 1 of them),
    the *tail* is the last ``max(2, ⌈m/2⌉)`` ratios and the steps they join. The numbers:

    * ``rho``: geometric mean of the tail ratios (``rho_min``, ``rho_max``: their range);
    * ``cos_min``: smallest cosine between successive tail steps;
    * ``q{p}`` for each p in ``periods``: largest over the tail states i (with i ≥ p) of
      ``‖h_i − h_{i−p}‖ / max(s_{i−p+1}, …, s_i)``: 0 when the trajectory returns after p steps, 2 for
      two equal steps in one direction, about 1 for independent noise;
    * ``rel_step``: ``s_n / ‖h_n‖``.

    The label is the first rule that holds, in this order:

    1. fewer than ``MIN_ITERATES`` states: ``undecided`` (too short);
    2. ``rel_step ≤ STEP_TOL``: ``fixed point`` (stopped);
    3. ``rho ≤ RHO_CONTRACT`` and ``rho_max < 1/RHO_STEADY`` (every tail step clearly shorter than the
       one before): ``fixed point`` (contracting);
    4. ``rho ≥ RHO_DIVERGE`` and ``rho_min > RHO_STEADY`` (every tail step clearly longer):
       ``diverging``;
    5. for the smallest p in ``periods`` with ``q{p} ≤ Q_CYCLE`` and every tail step within a factor
       ``RHO_STEADY`` of the step p before it: ``cycle`` (``period`` p);
    6. every tail ratio within ``[1/RHO_STEADY, RHO_STEADY]`` and ``cos_min ≥ COS_DRIFT``: ``drift``
       (steps of constant size in a converged direction: ``h ← h + c``, and the linear growth of a
       residual stream);
    7. otherwise ``undecided``: noise (cosine near −1/2, ``q ≈ 1``); a slow contraction or slow growth
       that this many states cannot tell from a drift; or a transient in the tail (one ratio far
       from the others, as when the first application's large step is among two tail ratios).

    None of these numbers changes when the trajectory is scaled or shifted, so a norm that grows with
    depth cannot turn a drift into a fixed point (the relative change ``r`` of
    :func:`iterate_metrics` falls like 1/i on ``h ← h + c``; ``rho`` stays 1). Returns a dict with
    ``label``, ``period`` (cycles; else None), ``reason`` (the rule in words), ``n_iterates``, the
    numbers above and ``steps`` (all n of them, a tuple).
    """
    h = np.asarray(traj, np.float64)
    h = h.reshape(h.shape[0], -1)
    n_it = h.shape[0]
    periods = tuple(sorted({int(p) for p in periods}))
    out = dict(label="undecided", period=None, reason="", n_iterates=n_it, rho=math.nan, rho_min=math.nan,
               rho_max=math.nan, cos_min=math.nan, rel_step=math.nan, steps=())
    out.update({f"q{p}": math.nan for p in periods})
    if n_it < MIN_ITERATES:
        out["reason"] = f"too short: {n_it} states, the rule needs at least {MIN_ITERATES}"
        return out
    d = np.diff(h, axis=0)                                     # d[i-1] = h_i − h_{i−1}
    s = np.linalg.norm(d, axis=1)                              # s[i-1] = s_i, i = 1..n
    n = len(s)
    out["steps"] = tuple(float(v) for v in s)
    out["rel_step"] = float(s[-1] / (np.linalg.norm(h[-1]) + EPS))
    if out["rel_step"] <= STEP_TOL:
        out.update(label="fixed point", reason=f"stopped: last step / ‖h‖ = {out['rel_step']:.1e} ≤ {STEP_TOL:g}")
        return out
    ratios = s[1:] / (s[:-1] + EPS)
    t = _tail_len(len(ratios))
    tail = ratios[-t:]
    rho = float(np.exp(np.mean(np.log(np.maximum(tail, EPS)))))
    dt = d[-(t + 1):]                                          # the t + 1 steps the tail ratios join
    cos = np.sum(dt[1:] * dt[:-1], 1) / (np.linalg.norm(dt[1:], axis=1) * np.linalg.norm(dt[:-1], axis=1) + EPS)
    out.update(rho=rho, rho_min=float(tail.min()), rho_max=float(tail.max()), cos_min=float(cos.min()))
    steady_p = {}
    for p in periods:
        idx = [i for i in range(n - t + 1, n + 1) if i >= p]    # tail states h_i (i = n−t+1..n)
        if not idx:
            continue
        out[f"q{p}"] = float(max(np.linalg.norm(h[i] - h[i - p]) / (s[i - p:i].max() + EPS) for i in idx))
        same_side = [s[i - 1] / (s[i - 1 - p] + EPS) for i in range(n - t + 1, n + 1) if i - 1 - p >= 0]
        steady_p[p] = bool(same_side) and all(1 / RHO_STEADY <= v <= RHO_STEADY for v in same_side)
    if rho <= RHO_CONTRACT and out["rho_max"] < 1 / RHO_STEADY:
        out.update(label="fixed point", reason=f"contracting: ρ = {rho:.3g} ≤ {RHO_CONTRACT:g}, every tail "
                                               f"ratio < {1 / RHO_STEADY:.3g}")
    elif rho >= RHO_DIVERGE and out["rho_min"] > RHO_STEADY:
        out.update(label="diverging", reason=f"expanding: ρ = {rho:.3g} ≥ {RHO_DIVERGE:g}, every tail "
                                             f"ratio > {RHO_STEADY:g}")
    elif any(out[f"q{p}"] <= Q_CYCLE and steady_p.get(p) for p in periods):
        p = next(p for p in periods if out[f"q{p}"] <= Q_CYCLE and steady_p.get(p))
        out.update(label="cycle", period=p,
                   reason=f"returns every {p} steps: q{p} = {out[f'q{p}']:.3g} ≤ {Q_CYCLE:g}, steps of steady size")
    elif (1 / RHO_STEADY <= out["rho_min"] and out["rho_max"] <= RHO_STEADY
          and out["cos_min"] >= COS_DRIFT):
        out.update(label="drift", reason=(f"steady steps in one direction: tail ratios {out['rho_min']:.3g} to "
                                          f"{out['rho_max']:.3g}, within [{1 / RHO_STEADY:.3g}, {RHO_STEADY:g}]; "
                                          f"cosine ≥ {out['cos_min']:.3g}"))
    else:
        out["reason"] = f"no rule holds: ρ = {rho:.3g}, cos min {out['cos_min']:.3g}, " + ", ".join(
            f"q{p} = {out[f'q{p}']:.3g}" for p in periods)
    return out


def classify_cases(traj, periods=(2, 3)):
    """:func:`classify_trajectory` of every case: ``traj`` is ``(n + 1, B, ...)`` (case b's state i is
    ``traj[i, b]``, flattened). A DataFrame with one row per case: ``case`` and the classifier's
    numbers (``steps`` left out)."""
    import pandas as pd

    traj = np.asarray(traj)
    rows = []
    for b in range(traj.shape[1]):
        res = classify_trajectory(traj[:, b], periods)
        res.pop("steps")
        rows.append(dict(case=b, **res))
    return pd.DataFrame(rows)


def label_shares(labels) -> dict:
    """Fraction of each of ``LABELS`` among ``labels`` (every label present, 0.0 when absent)."""
    labels = list(labels)
    if not labels:
        raise ValueError("no labels to count")
    return {lab: sum(v == lab for v in labels) / len(labels) for lab in LABELS}


@functools.partial(jax.jit, static_argnums=(0, 3))
def _trajectory(graphdef, state, x, loops: int):
    m = nnx.merge(graphdef, state)
    return jnp.concatenate([m.encoder(x)[None], m.iterates(x, loops=loops)])


def model_trajectory(model, X, loops: int | None = None, *, batch_size: int = 256) -> np.ndarray:
    """The states of ``model`` (a copy, in eval mode) on ``X``: ``h_0 = E(u)`` (the encoder output) and
    the output of every application, ``(1 + k·n, B, T, H)`` for ``n = loops`` (default: the trained
    loop count). For k = 1 these are the block's iterates h_0..h_n; for k > 1 entry ``a`` is the
    output of application a (block ``(a − 1) mod k``), so a period-k cycle of the classifier is every
    block returning to its own point each loop, and ``traj[::k]`` (the states at the end of each loop)
    are the iterates of the loop map, one pass through all k blocks."""
    m = _eval_copy(model)
    loops = int(m.config.loops if loops is None else loops)
    graphdef, state = nnx.split(m)
    X = np.asarray(X, np.float32)
    parts = [np.asarray(_trajectory(graphdef, state, jnp.asarray(X[i:i + batch_size]), loops))
             for i in range(0, len(X), batch_size)]
    return np.concatenate(parts, axis=1)


# ------------------------------------------------------------------------------------ test-time depth
def _eval_copy(model, batch_stats: bool = False):
    """A copy of ``model`` with dropout off and batch norm on its running statistics (``batch_stats``:
    on the statistics of each batch it sees instead)."""
    m = nnx.clone(model)
    m.set_attributes(deterministic=True, use_running_average=not batch_stats, raise_if_not_found=False)
    if dataclasses.is_dataclass(getattr(m, "config", None)) and hasattr(m.config, "seed"):
        # the seed only draws the initial parameters; out of the static graph definition, the five seeds'
        # models of one configuration share one compiled program (each compiled its own: 1.5 s a model)
        m.config = dataclasses.replace(m.config, seed=0)
    return m


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _sweep(graphdef, state, x, loops: int, idx: tuple):
    """Predictions after iterate ``a`` for every ``a`` in ``idx`` and the iterate metrics of a ``loops`` run.

    Module level with the graph definition static, so models of one configuration (a trained model and
    its initialisation, say) share one compiled program per input shape."""
    m = nnx.merge(graphdef, state)
    states = m.iterates(x, loops=loops)
    preds = jnp.stack([jnp.argmax(m.readout(states[a]), -1) for a in idx])
    return preds, iterate_metric_arrays(states, len(m.blocks))


def depth_sweep(model, X, y, loops_range, *, batch_size: int = 256, batch_stats: bool = False):
    """Accuracy and iterate metrics of ``model`` run for every loop count in ``loops_range``, in one pass.

    The model (a copy, in eval mode) runs ``N = max(loops_range)`` loops on ``X`` in batches of
    ``batch_size``; the prediction for n loops is ``argmax readout(h_{n·k−1})`` (see the module
    docstring: iterates do not depend on how many loops follow). Returns ``(accuracy, metrics)``:

    * ``accuracy``: DataFrame with ``loops``, ``depth`` (= n·k), ``accuracy`` (fraction of ``y`` right)
      and ``trained`` (n equals the loops the model was built with);
    * ``metrics``: ``iterate_metrics`` of the N-loop run over all of ``X`` (per-batch means weighted
      by batch size, which equals the mean over all cases since every case has the same T).

    ``batch_stats=True`` runs batch norm on the statistics of each evaluation batch instead of its
    running statistics (dropout stays off): the fair way to look at an untrained model, whose running
    statistics are still the initial mean 0 and variance 1. Results then depend on the batches.
    """
    import pandas as pd

    loops_range = sorted({int(n) for n in loops_range})
    if not loops_range or loops_range[0] < 1:
        raise ValueError(f"loops_range must hold loop counts >= 1, got {loops_range!r}")
    m = _eval_copy(model, batch_stats)
    k, N = len(m.blocks), loops_range[-1]
    graphdef, state = nnx.split(m)
    idx = tuple(n * k - 1 for n in loops_range)
    X = np.asarray(X, np.float32)
    y = np.asarray(y)
    if len(X) != len(y) or len(X) == 0:
        raise ValueError(f"X and y must hold the same, non-zero number of cases, got {len(X)} and {len(y)}")
    correct = np.zeros(len(loops_range))
    sums, total = None, 0
    for start in range(0, len(X), batch_size):
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        preds, mets = _sweep(graphdef, state, jnp.asarray(xb), N, idx)
        correct += (np.asarray(preds) == yb[None]).sum(1)
        mets = {name: np.asarray(v, np.float64) * len(xb) for name, v in mets.items()}
        sums = mets if sums is None else {name: sums[name] + v for name, v in mets.items()}
        total += len(xb)
    acc = pd.DataFrame(dict(loops=loops_range, depth=[n * k for n in loops_range], accuracy=correct / total,
                            trained=[n == m.config.loops for n in loops_range]))
    return acc, _frame({name: v / total for name, v in sums.items()}, k)


def reinit(model, seed: int | None = None):
    """A freshly initialised model (eval mode) with ``model``'s configuration: the control for what
    training changed. ``seed`` defaults to the configuration's own seed, which for a model trained by
    ``lib.train`` is the initialisation training started from. Its batch norms still hold the initial
    running statistics; evaluate it with ``depth_sweep(..., batch_stats=True)``."""
    import dataclasses

    from lib.model import LoopedClassifier

    cfg = model.config if seed is None else dataclasses.replace(model.config, seed=int(seed))
    fresh = LoopedClassifier(cfg)
    fresh.eval()
    return fresh


def test_time_depth(model, X, y, loops_range, *, batch_size: int = 256, batch_stats: bool = False):
    """Accuracy of ``model`` on ``(X, y)`` when it runs n loops, for every n in ``loops_range``.

    A DataFrame with one row per loop count: ``loops``, ``depth`` (n·k), ``accuracy`` in [0, 1] and
    ``trained`` (whether n is the loop count it was trained with). See ``depth_sweep``.
    """
    return depth_sweep(model, X, y, loops_range, batch_size=batch_size, batch_stats=batch_stats)[0]


test_time_depth.__test__ = False  # not a pytest test, despite its name


# --------------------------------------------------------------------------------- inclusion, params
def inclusion_check(model, x) -> dict:
    """The inclusion claim as a number: ``max |model(x) − untie(model)(x)|`` over the logits.

    Both models run in eval mode (copies; ``model`` itself is left as it was). ``lib.untie`` builds the
    standard model of depth k·L whose block i is a copy of unique block ``i mod k``. Returns the maximum
    absolute logit difference, the largest logit magnitude (for scale) and both parameter counts.
    """
    looped = _eval_copy(model)
    standard = untie(looped)
    standard.eval()
    x = jnp.asarray(x)
    a, b = looped(x), standard(x)
    cl, cs = count_params(looped), count_params(standard)
    cfg = looped.config
    return dict(ssm=cfg.ssm, blocks=cfg.blocks, loops=cfg.loops, depth=cfg.depth,
                max_abs_diff=float(jnp.max(jnp.abs(a - b))), max_abs_logit=float(jnp.max(jnp.abs(a))),
                params_looped=cl["total"], params_standard=cs["total"],
                block_params_looped=cl["blocks"], block_params_standard=cs["blocks"])


def params_vs_depth(ssms, blocks=(1, 2, 3), depths=range(1, 13), *, hidden: int = 64, state: int = 64,
                    in_features: int = 6, num_classes: int = 2, **model_kwargs):
    """Trainable parameters of looped (k unique blocks) and standard (depth untied blocks) models.

    Every block of one SSM has the same parameters, so with ``p`` the parameters of one block and ``r``
    those of encoder + head (both counted on a real one-block model), a model with b unique blocks has
    ``r + b·p`` parameters whatever its loop count: looped k blocks × L loops ``r + k·p``, standard of
    depth D ``r + D·p``. Returns one row per (ssm, kind, blocks, loops): ``kind`` is ``"looped"`` (every k
    in ``blocks`` and every depth in ``depths`` that k divides, L = depth / k ≥ 2) or ``"standard"`` (k = depth,
    L = 1), with ``depth``, ``params_total``, ``params_blocks`` and ``ratio`` (standard / this model at the
    same depth).
    """
    import pandas as pd

    rows = []
    for ssm in ssms:
        one = count_params(build_model(ssm=ssm, blocks=1, loops=1, hidden=hidden, state=state,
                                       in_features=in_features, num_classes=num_classes, **model_kwargs))
        p, r = one["blocks"], one["total"] - one["blocks"]
        for d in depths:
            rows.append(dict(ssm=ssm, kind="standard", blocks=d, loops=1, depth=d, params_total=r + d * p,
                             params_blocks=d * p, ratio=1.0))
            for k in blocks:
                if d % k == 0 and d // k >= 2:
                    rows.append(dict(ssm=ssm, kind="looped", blocks=k, loops=d // k, depth=d,
                                     params_total=r + k * p, params_blocks=k * p,
                                     ratio=(r + d * p) / (r + k * p)))
    return pd.DataFrame(rows)


def schedule_frame(blocks=(1, 2, 3), depth: int = 6):
    """The depth policy as a table: for each k dividing ``depth``, which unique block each of the
    ``depth`` applications uses (``LoopedClassifier.schedule``: 0..k−1 repeated L = depth / k times).

    Columns ``blocks`` (k), ``loops`` (L), ``application`` (1..depth), ``loop`` (1..L), ``block`` (0..k−1),
    plus the standard model of the same depth (``blocks = depth``, ``loops = 1``)."""
    import pandas as pd

    from lib.model import LoopedClassifier

    rows = []
    for k in list(blocks) + [depth]:
        if depth % k:
            raise ValueError(f"depth {depth} is not a multiple of blocks={k}")
        L = depth // k
        # the model's own schedule, without building a model: only len(blocks) and the loop count matter
        shim = type("_Shim", (), {"blocks": range(k), "config": type("_C", (), {"loops": L})()})()
        sched = LoopedClassifier.schedule(shim)
        for a, j in enumerate(sched):
            rows.append(dict(model="standard" if k == depth else f"looped k={k}", blocks=k, loops=L,
                             application=a + 1, loop=a // k + 1, block=j))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------- saved models
def load_trained(path, *, data_folder=None):
    """A model saved by ``python -m lib.run ... --save-params DIR`` with the test data it was trained for.

    Returns ``(model, meta, split)``: the eval-mode model (``lib.store.load_state``), its ``.json``
    metadata and the prepared split of its record (data set, protocol, seed, reshape, chunk, order).
    The saved record does not say whether the time channel, padding or standardisation were used: a
    ``pipeline`` entry is used when present, otherwise the time channel is inferred from the model's
    ``in_features`` (``none``/``concat`` only), padding from whether the chunk divides the length, and
    standardisation is assumed off; ``meta["data_note"]`` says which.
    """
    from lib import data as D
    from lib.reshape import reshaped_shape
    from lib.store import load_state

    model, meta = load_state(path)
    rec, mk = meta["record"], meta["model"]
    pipe = rec.get("pipeline") or {}
    # the loader's policy for unequal lengths, as trained (JapaneseVowels: "pad"; older records: none)
    ds = D.load_uea(rec["dataset"], folder=data_folder, ragged=rec.get("ragged") or pipe.get("ragged") or "error")
    reshape, chunk, order = rec.get("reshape", "none"), int(rec.get("chunk", 1)), rec.get("order", "time")
    notes = []
    if pipe:
        time_ch = bool(pipe.get("time_channel", False))
        pad = bool((pipe.get("reshape") or {}).get("pad", False))
        standardize = bool(pipe.get("standardize"))
        notes.append("pipeline from the saved record")
    else:
        pad = reshape != "none" and (ds.length * (ds.channels if reshape == "rechunk" else 1)) % chunk != 0
        time_ch = False
        if reshape != "rechunk":
            shape_with = reshaped_shape(ds.length, ds.channels + 1, reshape, chunk, pad=pad)
            time_ch = shape_with[1] == mk["in_features"]
        standardize = False
        notes.append(f"inferred: time channel {time_ch}, pad {pad}; standardisation assumed off")
    s = D.split(ds, rec.get("protocol", "paper"), int(rec["seed"]), time=time_ch)
    s = D.prepare(s, reshape=reshape, chunk=chunk, order=order, pad=pad, standardize=standardize)
    if s.X_test.shape[-1] != mk["in_features"]:
        raise ValueError(f"{path}: rebuilt data has {s.X_test.shape[-1]} features, the model expects "
                         f"{mk['in_features']} ({notes[-1]})")
    meta = dict(meta, data_note="; ".join(notes))
    return model, meta, s


def saved_models(folder, blocks=(1, 2)) -> list[Path]:
    """The ``.npz`` files in ``folder`` (sorted) of looped models (``loops`` ≥ 2) with k in ``blocks``."""
    out = []
    for npz in sorted(Path(folder).glob("*.npz")):
        meta_path = npz.with_suffix(".json")
        if not meta_path.exists():
            continue
        mk = json.loads(meta_path.read_text())["model"]
        if mk.get("blocks") in tuple(blocks) and mk.get("loops", 1) >= 2:
            out.append(npz)
    return out


def pick_saved(paths, blocks=(1, 2), ssm: str | None = None, depth: int | None = None) -> dict:
    """One saved model per k in ``blocks``: ``{k: path}``. Prefers a group of files that share data
    set, SSM, reshaping, chunk, hidden size, seed and training profile (protocol) and has every k, so
    that the models compare like with like; otherwise one file for each k. Missing k are left out. Candidates are ranked by
    ``ssm`` first (models of this SSM), then by ``depth`` (models with k·L = depth), then by
    recorded validation accuracy (a model that learnt its task over one near chance), then by path."""
    metas = {Path(p): json.loads(Path(p).with_suffix(".json").read_text()) for p in paths}

    def rank(p):
        mk = metas[p]["model"]
        val = metas[p].get("record", {}).get("val_acc", -1.0)
        return (ssm is not None and mk.get("ssm") != ssm,
                depth is not None and mk.get("blocks", 1) * mk.get("loops", 1) != depth, -val, p)

    order = sorted(metas, key=rank)
    groups, first = {}, {}
    for path in order:
        meta = metas[path]
        mk, rec = meta["model"], meta["record"]
        k = mk.get("blocks")
        if k not in tuple(blocks):
            continue
        key = (rec.get("dataset"), mk.get("ssm"), rec.get("reshape"), rec.get("chunk"), mk.get("hidden"),
               rec.get("seed"), rec.get("profile"), rec.get("protocol"))
        groups.setdefault(key, {}).setdefault(k, path)
        first.setdefault(k, path)
    for group in groups.values():
        if all(k in group for k in blocks):
            return {k: group[k] for k in blocks}
    return first


def loop_families(folder, *, ssm: str | None = None, min_size: int = 3) -> list[tuple[dict, dict]]:
    """Saved one-block models that differ only in the loop count L they were trained with.

    Groups the models in ``folder`` by data set, SSM, reshaping, chunk, hidden size and seed and
    returns ``[(key, {L: path})]`` for the groups with at least ``min_size`` loop counts, in this order:
    the models of ``ssm`` first; then by data set (alphabetically); within a data set, larger groups
    first, then no reshaping before any reshaping, then by reshaping name, chunk (numerically), hidden
    size and seed. So the first family of each data set is its largest, and chunks read 48, 96, 192
    (not 192, 48, 96). The widget grid saves such families (seed 0 of looped S5 at loops 1, 2, 3, 4,
    6, 8 for every chunk)."""
    groups = {}
    for npz in sorted(Path(folder).glob("*.npz")):
        meta_path = npz.with_suffix(".json")
        if not meta_path.exists():
            continue
        meta = json.loads(meta_path.read_text())
        mk, rec = meta["model"], meta["record"]
        if mk.get("blocks") != 1:
            continue
        key = dict(dataset=rec.get("dataset"), ssm=mk.get("ssm"), reshape=rec.get("reshape"),
                   chunk=rec.get("chunk"), hidden=mk.get("hidden"), seed=rec.get("seed"))
        groups.setdefault(tuple(key.items()), {}).setdefault(int(mk.get("loops", 1)), npz)
    fams = [(dict(k), dict(sorted(v.items()))) for k, v in groups.items() if len(v) >= min_size]

    def order(fam):
        k, members = fam
        return (ssm is not None and k["ssm"] != ssm, str(k["dataset"]), -len(members),
                k["reshape"] not in (None, "none"), str(k["reshape"]), _num(k["chunk"]),
                _num(k["hidden"]), _num(k["seed"]), str(k["ssm"]))

    return sorted(fams, key=order)


def _num(v) -> float:
    """A sort key for an optional number (missing first)."""
    return -math.inf if v is None else float(v)
