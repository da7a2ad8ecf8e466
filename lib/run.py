"""Train one configuration over its seeds and append one record per seed.

    python -m lib.run --dataset BasicMotions --ssm s5 --blocks 1 --loops 6 \\
        --reshape concat --chunk 2 --seeds 5 --out data/results/dev.jsonl

Defaults are the ``full`` profile's settings (``lib.train.PROFILES``), so a bare run gives a real
result; ``--profile smoke`` gives a quick one. Seeds already recorded in ``--out`` are skipped, so
an interrupted run resumes. Within a configuration, progress is checkpointed after every evaluation
(``.ckpt/`` or ``$LOOPED_SSM_CKPT_DIR``; removed once the records are written), so a killed run or
one stopped by ``--stop-after-min M`` goes on from its last evaluation when the same command is run
again (the record's ``segments`` say which commit and device ran which steps). ``--save-params DIR``
stores the first seed's best-validation model state (``DIR/<run key>.npz`` + ``.json``; one seed keeps
the files small) for the book's analyses of trained looped models.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

from lib.provenance import git_commit, versions  # noqa: E402  (one implementation)
from lib.store import flat_arrays, load_state, params_path, save_state  # noqa: E402,F401  (one home: lib.store)


# ---- the run fields: one table, from which RunSpec, its command line, the parser and the key derive ----
class _Required:
    def __repr__(self):
        return "required"


_REQUIRED = _Required()  # a field without a default


@dataclasses.dataclass(frozen=True)
class RunField:
    """One setting of a run. ``flag``: its ``lib.run`` flag (``kind`` "bool": a switch); ``default``:
    RunSpec's default, which ``RunSpec.command`` leaves out (``_REQUIRED``: always written);
    ``cli_default``: the flag's default where it differs (None: the profile decides); ``shown``:
    RunSpec → whether the command writes the flag (default: value != default); ``choices``: a
    tuple, or a function giving one when the parser is built (registries as they are then)."""

    name: str
    flag: str
    kind: type
    default: object = _REQUIRED
    help: str | None = None
    choices: object = None
    cli_default: object = _REQUIRED
    shown: object = None


def _reshaped(spec) -> bool:
    return spec.reshape != "none"


def _profile_value(name):
    """Shown where the value differs from the profile's (``lib.profiles``)."""
    def shown(spec):
        from lib.profiles import PROFILES

        return getattr(spec, name) != PROFILES[spec.profile][name]
    return shown


def _set(name):
    return lambda spec: getattr(spec, name) is not None


def _choices(module: str, name: str):
    def get():
        import importlib

        return tuple(getattr(importlib.import_module(module), name))
    return get


#: every setting of a run, in the order ``RunSpec.command`` writes them. ``seeds`` (``--seeds N`` or
#: ``--seed-list``) and ``ssm_options`` (repeated ``--ssm-option KEY=VALUE``) have their own syntax.
RUN_FIELDS = (
    RunField("dataset", "--dataset", str, help="UEA data set name (python -m lib.datasets --list)"),
    RunField("ssm", "--ssm", str, choices=_choices("lib.ssm", "SSMS"), help="SSM in the registry lib.ssm.SSMS"),
    RunField("blocks", "--blocks", int, cli_default=1, help="unique blocks k (default 1)"),
    RunField("loops", "--loops", int, cli_default=6, help="times the k blocks are applied (default 6)"),
    RunField("reshape", "--reshape", str, "none", choices=_choices("lib.schema", "RESHAPES"), shown=_reshaped),
    RunField("chunk", "--chunk", int, 1, shown=_reshaped),
    RunField("order", "--order", str, "time", choices=_choices("lib.schema", "ORDERS"),
             shown=lambda s: _reshaped(s) and s.order != "time"),
    RunField("pad", "--pad", bool, False, help="zero-pad the end when the chunk does not divide the length",
             shown=lambda s: _reshaped(s) and s.pad),
    RunField("protocol", "--protocol", str, "paper", choices=_choices("lib.data", "PROTOCOLS")),
    RunField("seeds", "--seeds", tuple, (2345, 3456, 4567, 5678, 6789),
             help="the first N of the paper's seeds 2345..6789", shown=lambda s: True),
    RunField("profile", "--profile", str, "full", choices=_choices("lib.profiles", "PROFILE_NAMES"),
             help="training profile (lib.profiles): full = the paper's protocol, budget = its truncation "
                  "that fits a CPU, smoke = a pipeline check"),
    RunField("hidden", "--hidden", int, 64, cli_default=None, shown=_profile_value("hidden")),
    RunField("state", "--state", int, 64, cli_default=None, shown=_profile_value("state")),
    RunField("lr", "--lr", float, None, help="default: the SSM's rate in the registry (lib.ssm.SSMS)"),
    RunField("max_steps", "--max-steps", int, None),
    RunField("eval_every", "--eval-every", int, None),
    RunField("patience", "--patience", int, None),
    RunField("batch_size", "--batch-size", int, 32),
    RunField("time_channel", "--time", bool, False, help="prepend the time channel (peers' option)"),
    RunField("standardize", "--standardize", bool, False, help="per-channel standardisation fitted on train"),
    RunField("input_injection", "--input-injection", bool, False,
             help="add the encoded input before every block application but the first"),
    RunField("ragged", "--ragged", str, "error", choices=_choices("lib.data", "RAGGED_POLICIES"),
             help="unequal series lengths: refuse (error), repeat the last observation up to the longest "
                  "(pad), or cut to the shortest (truncate); recorded in the record"),
    RunField("init", "--init", str, "default", choices=_choices("lib.schema", "INITS"),
             help="tied: start a standard model (loops 1) as the looped 1×k model of the same seed, untied "
                  "(issue 21's control)"),
    RunField("tag", "--tag", str, "main"),
    RunField("ssm_options", "--ssm-option", tuple, (),
             help="extra SSM layer option, e.g. ssm_blocks=4 (repeatable)"),
)
RUN_FIELD = {f.name: f for f in RUN_FIELDS}
#: the key fields whose record value is the resolved optimisation setting (``train_config``), not the flag
_RESOLVED = ("lr", "batch_size", "max_steps", "eval_every", "patience")


class _RunSpecMethods:
    def train_config(self):
        from lib.train import train_config

        return train_config(self.ssm, self.profile, lr=self.lr, batch_size=self.batch_size,
                            max_steps=self.max_steps, eval_every=self.eval_every, patience=self.patience)

    def key_fields(self, seed: int) -> dict:
        """The record's ``lib.schema.KEY_FIELDS`` for ``seed``, in that order: everything that changes
        what is trained (the resolved optimisation settings, not the flags that asked for them), and ``tag``."""
        from lib.schema import KEY_FIELDS

        cfg = self.train_config()
        out = {}
        for name in KEY_FIELDS:
            if name == "seed":
                out[name] = int(seed)
            elif name in _RESOLVED:
                out[name] = getattr(cfg, name)
            elif name == "ssm_options":
                out[name] = dict(self.ssm_options)
            else:
                out[name] = getattr(self, name)
        return out

    def training_fields(self, seed: int) -> dict:
        """``key_fields`` (``lib.results.training_key`` ignores ``tag``: two grids' specs with equal
        training keys train the same model)."""
        return self.key_fields(seed)

    def label(self) -> str:
        """The configuration in a few words, as progress lines print it: "NATOPS s5 1x6 rechunk/72"."""
        return f"{self.dataset} {self.ssm} {self.blocks}x{self.loops} {self.reshape}/{self.chunk}"

    def command(self, out: str | None = None) -> str:
        """The ``python -m lib.run`` command line that runs exactly this configuration: every field of
        ``RUN_FIELDS`` in its order, where it differs from its default."""
        from lib.data import PAPER_SEEDS

        args = ["python", "-m", "lib.run"]
        for f in RUN_FIELDS:
            value = getattr(self, f.name)
            if not (f.shown(self) if f.shown else (f.default is _REQUIRED or value != f.default)):
                continue
            if f.name == "seeds":
                args += (["--seeds", str(len(value))] if tuple(value) == tuple(PAPER_SEEDS[: len(value)])
                         else ["--seed-list", ",".join(map(str, value))])
            elif f.name == "ssm_options":
                for k, v in value:
                    args += [f.flag, f"{k}={v}"]
            elif f.kind is bool:
                args.append(f.flag)
            else:
                args += [f.flag, str(value)]
        if out:
            args += ["--out", out]
        return shlex.join(args)


RunSpec = dataclasses.make_dataclass(
    "RunSpec",
    [(f.name, f.kind if f.default is not None else f.kind | None) if f.default is _REQUIRED else
     (f.name, f.kind if f.default is not None else f.kind | None, dataclasses.field(default=f.default))
     for f in sorted(RUN_FIELDS, key=lambda f: f.default is not _REQUIRED)],  # required fields first
    bases=(_RunSpecMethods,), frozen=True,
    namespace={"__module__": __name__,
               "__doc__": "One configuration: the data pipeline, the model, the optimisation and where it came "
                          "from. Its fields are ``RUN_FIELDS``."})


def load_splits(spec: RunSpec, data_folder=None):
    """The prepared split of every seed (loading the data once)."""
    from lib import data as D

    ds = D.load_uea(spec.dataset, folder=data_folder, ragged=spec.ragged)
    out = []
    for seed in spec.seeds:
        s = D.split(ds, spec.protocol, seed, time=spec.time_channel)
        out.append(D.prepare(s, reshape=spec.reshape, chunk=spec.chunk, order=spec.order, pad=spec.pad,
                             standardize=spec.standardize))
    return ds, out


def checkpoint_dir() -> Path:
    """Where unfinished configurations keep their progress: ``$LOOPED_SSM_CKPT_DIR`` or ``.ckpt/``."""
    return Path(os.environ.get("LOOPED_SSM_CKPT_DIR") or REPO / ".ckpt")


def checkpoint_path(spec: RunSpec, folder: str | Path | None = None) -> Path:
    """The checkpoint file of one configuration (its seeds included): readable name + spec hash."""
    import hashlib

    fields = dataclasses.asdict(spec)
    if fields.get("init") == "default":  # a field added later: its default leaves older checkpoints' names as they were
        del fields["init"]
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()
    name = (f"{spec.dataset}_{spec.ssm}_b{spec.blocks}x{spec.loops}_{spec.reshape}{spec.chunk}_{spec.profile}"
            f"_{digest[:12]}.npz")
    return Path(folder if folder is not None else checkpoint_dir()) / name


def check_writable(path: str | Path, what: str = "the output") -> Path:
    """``path`` if a file can be written there: not a folder, no file where a folder of its path should
    be, and neither the file (when it exists) nor the nearest existing folder above it read-only (for
    this user, or with no write permission bit at all). ``run`` checks its outputs with it before
    training, so nothing trained is lost at the end; ``ValueError`` naming ``path`` and ``what``
    otherwise. Nothing is created."""
    path = Path(path)

    def read_only(p: Path) -> bool:  # as root os.access says yes to everything: the mode bits count too
        return not (os.access(p, os.W_OK | (os.X_OK if p.is_dir() else 0)) and os.stat(p).st_mode & 0o222)

    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name (e.g. {path / 'results.jsonl'})")
    if path.exists() and read_only(path):
        raise ValueError(f"{what} {path} is read-only; make it writable (chmod u+w) or write elsewhere")
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what} {path} cannot be written: {folder} is a file, not a folder")
    if read_only(folder):
        raise ValueError(f"{what} {path} cannot be written: the folder {folder} is read-only")
    return path


def run(spec: RunSpec, out: str | Path | None = None, *, data_folder=None, save_params: str | Path | None = None,
        save_seeds: str = "first",
        progress=None, command: str | None = None, checkpoint: str | Path | bool | None = True,
        deadline: float | None = None, trained: set | frozenset = frozenset(),
        keep_checkpoint: bool = False) -> list[dict]:
    """Train ``spec`` on every seed not yet in ``out`` (all in one program) and append their records.

    ``checkpoint``: True (default) keeps progress in ``checkpoint_path(spec)``, a path puts it
    there, False/None keeps none. ``deadline`` (``time.time()``): stop at the last evaluation
    before it and raise ``lib.train.Interrupted`` (the checkpoint holds the progress).
    ``trained``: ``lib.results.training_key`` s recorded elsewhere (another grid's records of the
    same training, see ``lib.grid.records_for``); those seeds are not trained again.
    ``save_params``: a folder for the trained model states (``lib.store.save_state``) of the first
    seed (``save_seeds="first"``) or of every seed (``"all"``).
    ``keep_checkpoint``: leave the finished configuration's checkpoint for the caller to remove once
    it has stored the records (``lib.launch``: a Ray task returns them to the driver, which writes).
    Returns the new records (an empty list when every seed was already recorded)."""
    from lib import results as Rs
    from lib.train import default_mode, device_name, train_seeds

    cfg = spec.train_config()  # validates the optimisation settings before anything runs
    if out is not None:
        check_writable(out, "the records file")
    if save_params is not None:
        check_writable(Path(save_params) / "x.npz", "the --save-params folder")
    if checkpoint is True:
        check_writable(checkpoint_path(spec), "the checkpoint folder ($LOOPED_SSM_CKPT_DIR or .ckpt/)")
    elif checkpoint:
        check_writable(checkpoint, "the checkpoint")
    todo = [s for s in spec.seeds if Rs.training_key(spec.training_fields(s)) not in trained]
    if out is not None:
        done = Rs.done_keys(out)
        todo = [s for s in todo if Rs.record_key(spec.key_fields(s)) not in done]
    if not todo:
        return []
    spec_todo = dataclasses.replace(spec, seeds=tuple(todo))
    ds, splits = load_splits(spec_todo, data_folder)
    x0 = splits[0].X_train
    model_kwargs = dict(ssm=spec.ssm, blocks=spec.blocks, loops=spec.loops, hidden=spec.hidden, state=spec.state,
                        in_features=int(x0.shape[-1]), num_classes=int(splits[0].n_classes),
                        input_injection=spec.input_injection, **dict(spec.ssm_options))
    if spec.init != "default":
        model_kwargs["init"] = spec.init
    import jax

    model_kwargs["mode"] = default_mode(spec.ssm)
    sha, dirty = git_commit()
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ckpt = (checkpoint_path(spec_todo) if checkpoint is True else Path(checkpoint) if checkpoint else None)
    results, trainer = train_seeds(model_kwargs, splits, cfg, todo, progress=progress, checkpoint=ckpt,
                                   deadline=deadline, note=dict(commit=sha, dirty=dirty, device=device_name(),
                                                                started=now))
    cmd = command or spec.command(str(out) if out else None)
    records = []
    for r in results:
        rec = dict(spec.key_fields(r.seed))
        rec.update(depth=spec.blocks * spec.loops,
                   params_total=trainer.params_count["total"], params_blocks=trainer.params_count["blocks"],
                   val_acc=r.val_acc, test_acc=r.test_acc, train_acc=r.train_acc, best_step=r.best_step,
                   steps=r.steps, wall_s=round(trainer.wall_s, 3), compile_s=round(trainer.compile_s, 3),
                   **({} if trainer.cpu_s is None else {"cpu_s": round(trainer.cpu_s, 3)}),
                   seeds_in_program=len(todo), mode=model_kwargs["mode"], device=device_name(), n_devices=len(jax.devices()),
                   versions=versions(), commit=sha, dirty=dirty, command=cmd, profile=spec.profile,
                   created=now, seq_len=int(x0.shape[1]), in_features=int(x0.shape[2]),
                   n_train=int(x0.shape[0]), n_val=int(splits[0].X_val.shape[0]),
                   n_test=int(splits[0].X_test.shape[0]), data_source=";".join(map(str, ds.source)),
                   pipeline=splits[0].pipeline, segments=trainer.segments, history=r.history)
        records.append(rec)
        if save_params is not None and (save_seeds == "all" or r.seed == spec.seeds[0]):  # by default seed 0 only
            save_state(Path(save_params), rec, trainer, r.state, model_kwargs)
    if out is not None:
        Rs.append_records(out, records)
    if ckpt is not None and not keep_checkpoint:
        ckpt.unlink(missing_ok=True)
    return records


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lib.run", description=__doc__.split("\n\n")[0])
    for f in RUN_FIELDS:  # the run's settings, from the one table
        kw = {"help": f.help} if f.help else {}
        if f.name == "seeds":
            p.add_argument("--seeds", type=int, default=len(f.default), **kw)
            p.add_argument("--seed-list", default=None, help="explicit comma-separated seeds (overrides --seeds)")
            continue
        if f.name == "ssm_options":
            p.add_argument(f.flag, dest=f.name, action="append", default=[], metavar="KEY=VALUE", **kw)
            continue
        if f.kind is bool:
            p.add_argument(f.flag, dest=f.name, action="store_true", **kw)
            continue
        if f.choices is not None:
            kw["choices"] = f.choices() if callable(f.choices) else f.choices
        default = f.default if f.cli_default is _REQUIRED else f.cli_default
        if default is _REQUIRED:
            kw["required"] = True
        else:
            kw["default"] = default
        p.add_argument(f.flag, dest=f.name, type=f.kind, **kw)
    p.add_argument("--data-dir", default=None, help="folder with NAME.npz or NAME_TRAIN.ts/NAME_TEST.ts")
    p.add_argument("--out", default="data/results/dev.jsonl")
    p.add_argument("--save-params", default=None, metavar="DIR")
    p.add_argument("--stop-after-min", type=float, default=None, metavar="M",
                   help="checkpoint and stop at the last evaluation before M minutes (run again to go on)")
    p.add_argument("--no-checkpoint", action="store_true", help="keep no progress within the configuration")
    return p


def _option_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def check_ssm_options(ssm: str, options: dict) -> None:
    """Every key of ``options`` (``--ssm-option KEY=VALUE``) must be a keyword of the SSM layer
    (``lib.ssm``) or of ``lib.model.build_model`` (``dropout``, ``norm``); ValueError otherwise, before
    anything is built (a layer would raise a ``TypeError`` deep inside the trainer)."""
    import inspect

    from lib.ssm import ssm_class

    cls, fixed = ssm_class(ssm)
    params = inspect.signature(cls.__init__).parameters
    taken = {"self", "hidden", "state", "rngs", *fixed}  # set by the model, or by the SSM's name
    known = {n for n, q in params.items() if q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY)} - taken
    known |= {"dropout", "norm"}
    open_ended = any(q.kind is q.VAR_KEYWORD for q in params.values())
    for key in options:
        if key in taken or key in {"ssm", "blocks", "loops", "in_features", "num_classes", "seed",
                                   "input_injection", "mode"} or not (key in known or open_ended):
            raise ValueError(f"--ssm-option {key}: not an option of {ssm}; its options are "
                             f"{', '.join(sorted(known))}")


def spec_from_args(a) -> RunSpec:
    from lib.data import PAPER_SEEDS, check_name
    from lib.profiles import PROFILES

    try:
        check_name(a.dataset)
    except ValueError as e:
        raise ValueError(f"--dataset: {e}") from None
    if a.seed_list:
        try:
            seeds = tuple(int(s) for s in a.seed_list.split(","))
        except ValueError:
            raise ValueError(f"--seed-list must be comma-separated integers, got {a.seed_list!r}") from None
    else:
        if not 1 <= a.seeds <= len(PAPER_SEEDS):
            raise ValueError(f"--seeds must be between 1 and {len(PAPER_SEEDS)}, got {a.seeds}")
        seeds = tuple(PAPER_SEEDS[: a.seeds])
    opts = []
    for item in a.ssm_options:
        if "=" not in item:
            raise ValueError(f"--ssm-option must look like KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        opts.append((k, _option_value(v)))
    if len({k for k, _ in opts}) != len(opts):
        raise ValueError(f"--ssm-option names a key twice: {[k for k, _ in opts]}")
    check_ssm_options(a.ssm, dict(opts))
    prof = PROFILES[a.profile]
    for name in ("blocks", "loops", "batch_size", "max_steps", "eval_every", "hidden", "state"):
        v = getattr(a, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= 1, got {v}")
    if a.patience is not None and a.patience < 0:
        raise ValueError(f"--patience must be an integer >= 0, got {a.patience}")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed-list names a seed twice: {a.seed_list}")
    if a.init == "tied" and a.loops != 1:
        raise ValueError(f"--init tied starts a standard model as a looped one untied: it needs --loops 1, got {a.loops}")
    values = {f.name: getattr(a, f.name) for f in RUN_FIELDS if f.name not in ("seeds", "ssm_options")}
    values.update(seeds=seeds, ssm_options=tuple(sorted(opts)),
                  hidden=prof["hidden"] if a.hidden is None else a.hidden,
                  state=prof["state"] if a.state is None else a.state)
    return RunSpec(**values)


def strip_flag(argv: list, flag: str) -> list:
    """``argv`` without ``flag`` and its value (``--flag V`` or ``--flag=V``)."""
    out, skip = [], False
    for x in argv:
        if skip:
            skip = False
        elif x == flag:
            skip = True
        elif not x.startswith(flag + "="):
            out.append(x)
    return out


#: library wording -> the flag a user of ``python -m lib.run`` typed (``cli_message``)
_FLAG_WORDS = ((r"\bpass pad=True\b", "pass --pad"), (r"\bragged='(\w+)'", r"--ragged \1"),
               (r"\bpass folder=\.\.\.", "pass --data-dir DIR"), (r"^data folder ", "--data-dir "),
               (r"^lr must\b", "--lr must"), (r"^batch_size (\d+) is larger", r"--batch-size \1 is larger"),
               (r"^chunk must\b", "--chunk must"))


def cli_message(err: BaseException) -> str:
    """The text of an error for the command line: the flags instead of the library's keywords, and
    the kind of an OS error that does not say it."""
    import re

    text = str(err) or type(err).__name__
    if isinstance(err, OSError) and err.filename and str(err.filename) not in text:
        text = f"{text}: {err.filename}"
    if isinstance(err, (IndexError, KeyError)):
        text = f"{type(err).__name__}: {text} (bad input data?)"
    for pattern, flag in _FLAG_WORDS:
        text = re.sub(pattern, flag, text)
    return text


INTERRUPTED = "interrupted; run the same command again to go on"


def main(argv=None) -> int:
    import zipfile

    from lib.train import Interrupted

    a = parser().parse_args(argv)
    try:
        spec = spec_from_args(a)
        if spec.reshape == "none" and spec.chunk != 1:
            raise ValueError("--chunk needs --reshape concat or rechunk")
        if a.stop_after_min is not None and not a.stop_after_min > 0:
            raise ValueError(f"--stop-after-min must be > 0, got {a.stop_after_min}")
        if a.stop_after_min is not None and a.no_checkpoint:
            raise ValueError("--stop-after-min needs a checkpoint; drop --no-checkpoint")
        check_writable(a.out, "--out")  # before anything trains (run checks again, in its own words)
        if a.save_params is not None and Path(a.save_params).exists() and not Path(a.save_params).is_dir():
            raise ValueError(f"--save-params {a.save_params} is a file; give a folder")
        deadline = None if a.stop_after_min is None else time.time() + 60 * a.stop_after_min
        cmd = list(argv if argv is not None else sys.argv[1:])  # how long one sitting was is not part of it
        records = run(spec, a.out, data_folder=a.data_dir, save_params=a.save_params, deadline=deadline,
                      checkpoint=not a.no_checkpoint,
                      command=shlex.join(["python", "-m", "lib.run", *strip_flag(cmd, "--stop-after-min")]))
    except (ValueError, OSError, IndexError, KeyError, zipfile.BadZipFile) as e:
        print(f"error: {cli_message(e)}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"{e}; run the same command again to go on")
        return 0
    except KeyboardInterrupt:  # the checkpoint holds the last evaluation; records are written whole
        print(INTERRUPTED, file=sys.stderr)
        return 130
    if not records:
        print(f"all {len(spec.seeds)} seeds already recorded in {a.out}; nothing to do")
        return 0
    accs = np.array([r["test_acc"] for r in records]) * 100
    print(f"{spec.dataset} {spec.ssm} blocks={spec.blocks} loops={spec.loops} reshape={spec.reshape}/{spec.chunk}: "
          f"test {accs.mean():.2f} ± {accs.std():.2f} % over {len(records)} seeds "
          f"(val {np.mean([r['val_acc'] for r in records]) * 100:.2f} %), "
          f"{records[0]['wall_s']:.1f} s + {records[0]['compile_s']:.1f} s compile on {records[0]['device']}; "
          f"appended to {a.out}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # outside main's own handler (while importing, say)
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
