"""MiniRocket baseline on the same splits as the SSMs.

    python -m lib.baseline --dataset SelfRegulationSCP1 [--seeds 5] [--protocol paper]
                           [--out data/results/baseline.jsonl] [--profile smoke|full] [--tag main]

MiniRocket (Dempster, Schmidt & Webb, KDD 2021) in sktime's multivariate implementation
(``sktime.transformations.rocket.MiniRocketMultivariate``): ``num_kernels`` 10 000 (``full``) or
1 000 (``smoke``), rounded down by sktime to a multiple of 84 features; then, as in sktime's
``RocketClassifier``, ``StandardScaler(with_mean=False)`` and ``RidgeClassifierCV(alphas=
np.logspace(-3, 3, 10))`` whose alpha is chosen by efficient leave-one-out CV on the training
part. MiniRocket is fitted (dilations, biases) on the training part only, with
``random_state=seed``; it has no early stopping, so ``val_acc`` is just the accuracy on the
validation part. Splits come from ``lib.data.split`` (no time channel, no standardisation: the
raw channels). sktime wants ``(N, C, T)``; ``lib.data`` gives ``(N, T, C)``, transposed here.

Backend. sktime's transform needs ``numba``. When numba is importable, sktime's estimator runs as
is (``backend = "sktime-numba"``). When it is not (it is not in requirements.txt), sktime's own
fitting code (``_fit_multi``, plain Python/NumPy once sktime replaces ``njit`` by the identity)
chooses the dilations, channel combinations and biases, and ``transform_numpy`` below computes the
features: a line-by-line vectorisation of sktime's ``_transform_multi`` over a batch of cases
(``backend = "sktime-python"``; ``tests/test_baseline.py`` checks it against sktime's function
run in plain Python). The random draws differ between the two backends (numba keeps its own
random state inside ``_fit_biases_multi``), so the two give different but equally valid
MiniRockets.

Records follow ``lib.results`` with ``ssm="minirocket"``, ``blocks = loops = depth = 0``,
``hidden`` = number of features, ``params_total`` = ridge coefficients + intercepts,
``params_blocks = 0`` and zero step counts; extra fields ``num_kernels``, ``n_features``,
``alpha``, ``backend``, ``sizes`` ([train, val, test]) and ``transform_s`` (seconds spent in the
transform).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from lib import results as R

__all__ = ["NUM_KERNELS", "ALPHAS", "DEFAULT_OUT", "MiniRocket", "backend", "transform_numpy",
           "fit_evaluate", "run", "main"]

NUM_KERNELS = {"smoke": 1_000, "full": 10_000}
ALPHAS = np.logspace(-3, 3, 10)
DEFAULT_OUT = "data/results/baseline.jsonl"

# the 84 kernels: all choices of 3 positions (weight 2) among 9 (the others weigh -1)
_INDICES = np.array([(a, b, c) for a in range(9) for b in range(a + 1, 9) for c in range(b + 1, 9)],
                    dtype=np.int32)


def backend() -> str:
    """``"sktime-numba"`` when numba is importable, else ``"sktime-python"``."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return "sktime-python"
    return "sktime-numba"


def _sktime_fit(X_nct: np.ndarray, num_kernels: int, max_dilations_per_kernel: int, seed):
    """sktime's ``_fit_multi`` (plain Python without numba), leaving NumPy's global RNG as it was."""
    from sktime.transformations.rocket._minirocket_multi_numba import _fit_multi

    state = np.random.get_state()
    try:
        return _fit_multi(X_nct.astype(np.float32), num_kernels, max_dilations_per_kernel,
                          None if seed is None else np.int32(seed))
    finally:
        np.random.set_state(state)


def transform_numpy(X_nct: np.ndarray, parameters, *, max_bytes: float = 2.5e8) -> np.ndarray:
    """MiniRocket features of ``X`` (N, C, T) for fitted ``parameters`` (sktime's tuple), a
    vectorisation over cases of sktime's ``_transform_multi``: same convolutions (weights −1 and 2,
    computed as ``C_alpha`` + three shifted ``C_gamma``), same channel combinations, same padding
    rule, PPV features. Cases are processed in batches of about ``max_bytes`` of work arrays."""
    X = np.ascontiguousarray(X_nct, dtype=np.float32)
    n, n_ch, T = X.shape
    ncpc, ch_idx, dilations, nfpd, biases = parameters
    out = np.zeros((n, 84 * int(np.sum(nfpd))), dtype=np.float32)
    batch = max(1, int(max_bytes // (11 * n_ch * T * 4)))
    for s in range(0, n, batch):
        Xb = X[s:s + batch]
        A = -Xb  # alpha * X
        G = Xb + Xb + Xb  # gamma * X
        fs, comb, cs = 0, 0, 0
        for di, dilation in enumerate(dilations):
            dilation = int(dilation)
            p0 = di % 2
            padding = ((9 - 1) * dilation) // 2
            nf = int(nfpd[di])
            C_alpha = A.copy()
            C_gamma = np.zeros((9,) + Xb.shape, dtype=np.float32)
            C_gamma[9 // 2] = G
            start, end = dilation, T - padding
            for gi in range(9 // 2):
                C_alpha[..., -end:] = C_alpha[..., -end:] + A[..., :end]
                C_gamma[gi, ..., -end:] = G[..., :end]
                end += dilation
            for gi in range(9 // 2 + 1, 9):
                C_alpha[..., :-start] = C_alpha[..., :-start] + A[..., start:]
                C_gamma[gi, ..., :-start] = G[..., start:]
                start += dilation
            for ki in range(84):
                nch = int(ncpc[comb])
                chs = ch_idx[cs:cs + nch]
                i0, i1, i2 = _INDICES[ki]
                Cc = (C_alpha[:, chs] + C_gamma[i0][:, chs] + C_gamma[i1][:, chs]
                      + C_gamma[i2][:, chs]).sum(axis=1)  # (batch, T)
                if (p0 + ki) % 2:
                    Cc = Cc[:, padding:-padding]
                b = biases[fs:fs + nf]
                out[s:s + batch, fs:fs + nf] = (Cc[:, None, :] > b[None, :, None]).mean(axis=2)
                fs += nf
                comb += 1
                cs += nch
    return out


class MiniRocket:
    """MiniRocketMultivariate features, through sktime (numba) or its Python fit + NumPy transform."""

    def __init__(self, num_kernels: int = 10_000, max_dilations_per_kernel: int = 32, seed=None,
                 use: str | None = None):
        self.num_kernels = int(num_kernels)
        self.max_dilations_per_kernel = int(max_dilations_per_kernel)
        self.seed = seed
        self.backend = use or backend()
        if self.backend not in ("sktime-numba", "sktime-python"):
            raise ValueError(f"unknown backend {self.backend!r}")

    def fit(self, X_nct: np.ndarray) -> "MiniRocket":
        if X_nct.ndim != 3 or X_nct.shape[-1] < 9:
            raise ValueError(f"MiniRocket needs (N, C, T) with T >= 9, got {X_nct.shape}")
        if self.backend == "sktime-numba":
            from sktime.transformations.rocket import MiniRocketMultivariate

            self._est = MiniRocketMultivariate(num_kernels=self.num_kernels,
                                               max_dilations_per_kernel=self.max_dilations_per_kernel,
                                               n_jobs=1, random_state=self.seed)
            self._est.fit(X_nct.astype(np.float32))
        else:
            self.parameters = _sktime_fit(X_nct, self.num_kernels, self.max_dilations_per_kernel,
                                          self.seed)
        return self

    def transform(self, X_nct: np.ndarray) -> np.ndarray:
        if self.backend == "sktime-numba":
            return np.asarray(self._est.transform(X_nct.astype(np.float32)), dtype=np.float32)
        return transform_numpy(X_nct, self.parameters)


def _nct(X_ntc: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.swapaxes(X_ntc, 1, 2), dtype=np.float32)


def fit_evaluate(split, *, num_kernels: int = 10_000, seed: int = 0, use: str | None = None) -> dict:
    """Fit MiniRocket + scaler + ridge on ``split.X_train`` (``(N, T, C)``), score train/val/test.
    Returns accuracies (fractions), timings, feature and parameter counts, the chosen alpha."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    rocket = MiniRocket(num_kernels=num_kernels, seed=seed, use=use).fit(_nct(split.X_train))
    F = {part: rocket.transform(_nct(getattr(split, f"X_{part}")))
         for part in ("train", "val", "test")}
    t_transform = time.perf_counter() - t0
    clf = make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=ALPHAS))
    clf.fit(F["train"], split.y_train)
    acc = {part: float(np.mean(clf.predict(F[part]) == getattr(split, f"y_{part}")))
           for part in ("train", "val", "test")}
    ridge = clf[-1]
    return {
        "train_acc": acc["train"], "val_acc": acc["val"], "test_acc": acc["test"],
        "n_features": int(F["train"].shape[1]), "alpha": float(ridge.alpha_),
        "params_total": int(ridge.coef_.size + np.size(ridge.intercept_)),
        "wall_s": time.perf_counter() - t0, "transform_s": t_transform, "backend": rocket.backend,
    }


def _record(ds, *, protocol, seed, profile, tag, num_kernels, res, sizes, command) -> dict:
    rec = {
        "dataset": ds, "ssm": "minirocket", "blocks": 0, "loops": 0, "depth": 0,
        "reshape": "none", "chunk": 1, "order": "time", "protocol": protocol, "seed": int(seed),
        "hidden": res["n_features"], "state": 0, "lr": 0.0, "batch_size": 0, "max_steps": 0,
        "eval_every": 0, "patience": 0, "time_channel": False, "standardize": False,
        "input_injection": False, "params_total": res["params_total"], "params_blocks": 0,
        "val_acc": res["val_acc"], "test_acc": res["test_acc"], "train_acc": res["train_acc"],
        "best_step": 0, "steps": 0, "wall_s": float(res["wall_s"]), "compile_s": 0.0,
        "profile": profile, "tag": tag,
        # extras
        "num_kernels": int(num_kernels), "n_features": res["n_features"], "alpha": res["alpha"],
        "backend": res["backend"], "sizes": list(sizes), "transform_s": float(res["transform_s"]),
    }
    rec.update(R.provenance(device="cpu", n_devices=1, command=command,
                            extra_versions=("scikit-learn", "sktime")))
    return rec


def _parse_seeds(text: str | None, profile: str) -> list:
    from lib.data import PAPER_SEEDS

    if text is None:
        return list(PAPER_SEEDS[:1] if profile == "smoke" else PAPER_SEEDS)
    try:
        values = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be N or a comma list of integers, got {text!r}") from None
    if "," in text:
        if not values:
            raise ValueError(f"--seeds names no seed: {text!r}")
        if len(set(values)) != len(values):
            raise ValueError(f"--seeds names a seed twice: {text}")
        return values
    n = values[0] if values else 0
    if not 1 <= n <= len(PAPER_SEEDS):
        raise ValueError(f"--seeds N must be in 1..{len(PAPER_SEEDS)} (or a comma list), got {n}")
    return list(PAPER_SEEDS[:n])


def run(dataset: str, *, seeds=None, protocol: str = "paper", out=DEFAULT_OUT,
        profile: str = "full", tag: str = R.MAIN_TAG, num_kernels: int | None = None,
        folder=None, command: str | None = None, verbose: bool = True) -> list:
    """Run MiniRocket on ``dataset`` for each seed not yet in ``out``; append one record per seed
    (right after it finishes, so an interrupted run resumes). Returns the new records."""
    from lib.data import PAPER_SEEDS, load_uea, split

    if profile not in R.PROFILES:
        raise ValueError(f"profile must be one of {R.PROFILES}, got {profile!r}")
    seeds = list(PAPER_SEEDS if seeds is None else seeds)
    num_kernels = NUM_KERNELS[profile] if num_kernels is None else int(num_kernels)
    if num_kernels < 84:  # sktime would quietly use 84 while the record said otherwise
        raise ValueError(f"num_kernels must be at least 84 (MiniRocket's 84 kernels), got {num_kernels}")
    n_features = max(84, (num_kernels // 84) * 84)
    done = R.done_keys(out)
    data = None
    new = []
    for seed in seeds:
        key = R.record_key({"dataset": dataset, "ssm": "minirocket", "blocks": 0, "loops": 0,
                            "reshape": "none", "chunk": 1, "order": "time", "protocol": protocol,
                            "seed": seed, "lr": 0.0, "hidden": n_features, "state": 0, "tag": tag,
                            "batch_size": 0, "max_steps": 0, "eval_every": 0, "patience": 0,
                            "time_channel": False, "standardize": False, "input_injection": False,
                            "profile": profile})  # what ``_record`` writes: every KEY_FIELDS entry
        if key in done:
            if verbose:
                print(f"[baseline] {dataset} seed {seed}: already in {out}, skipped")
            continue
        if data is None:
            data = load_uea(dataset, folder=folder)
        s = split(data, protocol, seed)
        res = fit_evaluate(s, num_kernels=num_kernels, seed=seed)
        rec = _record(dataset, protocol=protocol, seed=seed, profile=profile, tag=tag,
                      num_kernels=num_kernels, res=res, sizes=s.sizes, command=command)
        R.append_records(out, [rec])
        new.append(rec)
        if verbose:
            print(f"[baseline] {dataset} seed {seed}: test {100 * res['test_acc']:.2f} "
                  f"val {100 * res['val_acc']:.2f} train {100 * res['train_acc']:.2f} "
                  f"({res['n_features']} features, alpha {res['alpha']:.3g}, {res['wall_s']:.1f} s, "
                  f"{res['backend']})")
    return new


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m lib.baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="UEA data set name, e.g. SelfRegulationSCP1")
    p.add_argument("--seeds", default=None,
                   help="N (the first N paper seeds) or a comma list; default 5 (full) / 1 (smoke)")
    p.add_argument("--protocol", default="paper", choices=R.PROTOCOLS)
    p.add_argument("--out", default=DEFAULT_OUT, help=f"JSON Lines file (default {DEFAULT_OUT})")
    p.add_argument("--profile", default="full", choices=R.PROFILES)
    p.add_argument("--tag", default=R.MAIN_TAG)
    p.add_argument("--num-kernels", type=int, default=None,
                   help="override the profile's number of kernels (10000 full, 1000 smoke)")
    p.add_argument("--data-dir", default=None, help="folder with the data (see lib.data.load_uea)")
    a = p.parse_args(argv)
    command = "python -m lib.baseline " + " ".join(
        shlex.quote(x) for x in (sys.argv[1:] if argv is None else argv))
    import zipfile

    from lib.data import check_name
    from lib.run import INTERRUPTED, check_writable, cli_message

    try:  # every error: one line naming it, exit status 2 (the seeds done so far stay recorded)
        try:
            check_name(a.dataset)
        except ValueError as e:
            raise ValueError(f"--dataset: {e}") from None
        if a.num_kernels is not None and a.num_kernels < 84:
            raise ValueError(f"--num-kernels must be at least 84 (MiniRocket's 84 kernels), got {a.num_kernels}")
        seeds = _parse_seeds(a.seeds, a.profile)
        check_writable(a.out, "--out")
        run(a.dataset, seeds=seeds, protocol=a.protocol, out=a.out, profile=a.profile, tag=a.tag,
            num_kernels=a.num_kernels, folder=a.data_dir, command=command)
    except (ValueError, OSError, IndexError, KeyError, zipfile.BadZipFile) as e:
        print(f"error: {cli_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # every finished seed is recorded
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
