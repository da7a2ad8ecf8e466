"""Running a grid's configurations on Ray: one task per configuration, one writer.

    python -m lib.grid --grid budget --profile budget                  # a local Ray instance, all cores
    python -m lib.grid --grid budget --profile budget --workers 2      # at most 2 configurations at once
    python -m lib.grid ... --address ray://head:10001                  # an existing cluster (or $RAY_ADDRESS)
    python -m lib.grid ... --launcher local                            # no Ray: one after another, here

Each configuration (all its seeds, ``lib.run.run``) is one Ray task that asks for one CPU core on a
CPU cluster or one GPU where the cluster has GPUs. On a CPU the task's process runs XLA on one thread
(``ONE_CORE_XLA_FLAGS``, measured by ``lib.bench train``: one single-threaded process per core beats
one process on all cores), so N tasks fill N cores.

The driver (the ``lib.grid`` process) is the only writer: a task returns its records (and the saved
model files the grid keeps) and the driver appends them to the results file as tasks finish, so
the file is never shared between processes and a worker node needs no access to it. A task keeps
its progress in its checkpoint (``lib.run.checkpoint_path``, in ``$LOOPED_SSM_CKPT_DIR``) and the
driver removes the checkpoint only once the records are written: a worker killed mid-configuration
(or a whole node) loses at most the steps since its last evaluation. A failed task is retried once
(Ray's ``max_retries``/``retry_exceptions``; the retry resumes from the checkpoint), then reported
without stopping the others; the grid then exits with status 1. Ctrl-C or SIGTERM stops the tasks
(checkpoints hold their last evaluation) and exits 130/143; rerunning the same command goes on.

Where tasks run. With no address Ray starts a private local instance on this machine (no
dashboard), sized by ``--workers`` (default: every core), and stops it at the end. With
``--address`` (or ``$RAY_ADDRESS``) the tasks go to that cluster: a multi-GPU box (``ray start
--head`` there), Slurm (``ray start`` in the batch script, or Ray's ``symmetric-run``), Kubernetes
(KubeRay), or a cloud cluster (``ray up``). The driver ships this repository's code to the workers
(``runtime_env`` ``working_dir``, without data, results and caches); each node needs the UEA data
at ``$LOOPED_SSM_UEA_DIR`` (the variable is passed on) and, to resume after a lost node, a
``$LOOPED_SSM_CKPT_DIR`` on a shared file system.

The budget grid plans in rounds: a round's tasks all finish before the grid is planned again, so the
cells that depend on a pilot's choice of chunk are submitted once that pilot is recorded.
"""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from lib import grid as G

#: XLA flags of a one-core CPU worker (XLA's own intra-op thread pool off)
ONE_CORE_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"
#: environment variables a task inherits from the driver (data, checkpoints, caches, provenance)
PASSED_ENV = ("LOOPED_SSM_UEA_DIR", "LOOPED_SSM_DATA_DIR", "LOOPED_SSM_CKPT_DIR", "LOOPED_SSM_JAX_CACHE",
              "LOOPED_SSM_COMMIT", "LOOPED_SSM_DIRTY", "LOOPED_SSM_LOG", "LOOPED_SSM_QUIET")
#: what ``working_dir`` leaves behind when the code is shipped to a cluster
EXCLUDES = [".git", ".venv", "_build", ".build", "_vendor", "node_modules", ".ckpt", "data/results",
            "data/params", "chapters/*.ipynb", "**/__pycache__"]
LAUNCHERS = ("ray", "local")
#: where the budget grid keeps every seed's model of its looped cells (for the Looping chapter's analyses)
BUDGET_PARAMS = "data/params/budget"
REPO = Path(__file__).resolve().parents[1]


def _xla_flags(gpu: bool) -> str:
    flags = os.environ.get("XLA_FLAGS", "")
    if gpu or "xla_cpu_multi_thread_eigen" in flags:
        return flags
    return (flags + " " + ONE_CORE_XLA_FLAGS).strip()


def worker_env(gpu: bool) -> dict:
    """The environment variables of every task's process."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env["XLA_FLAGS"] = _xla_flags(gpu)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    if "LOOPED_SSM_COMMIT" not in env:  # a cluster's copy of the code is outside git: say which commit it is
        from lib.provenance import git_commit

        sha, dirty = git_commit()
        env.update(LOOPED_SSM_COMMIT=sha, LOOPED_SSM_DIRTY="1" if dirty else "0")
    return env


def train_task(spec, *, save_params: bool, command: str, deadline: float | None, trained: frozenset,
               repo: str | None = None, save_seeds: str = "first") -> dict:
    """One configuration, in a Ray worker: ``lib.run.run`` without writing records (the driver does).

    Returns ``{"records": [...], "params": {file name: bytes}, "checkpoint": path}``, or
    ``{"interrupted": text}`` when ``deadline`` stopped it (its checkpoint holds the progress)."""
    if repo and Path(repo).is_dir():
        os.chdir(repo)  # relative data and checkpoint paths mean what they mean for the driver
    from lib.run import checkpoint_path, run
    from lib.train import Interrupted

    folder = Path(tempfile.mkdtemp(prefix="looped-ssm-params-")) if save_params else None
    try:
        recs = run(spec, None, save_params=folder, save_seeds=save_seeds, command=command, deadline=deadline,
                   trained=trained, keep_checkpoint=True)
    except Interrupted as e:
        return {"interrupted": str(e)}
    params = {}
    if folder is not None:
        for f in sorted(folder.iterdir()):
            params[f.name] = f.read_bytes()
            f.unlink()
        folder.rmdir()
    return {"records": recs, "params": params, "checkpoint": str(checkpoint_path(spec))}


class RayLauncher:
    """A Ray instance (local or an existing cluster) running ``train_task``; ``run_round`` submits
    a list of configurations and hands each result to ``on_result`` as it finishes."""

    def __init__(self, *, address: str | None = None, workers: int | None = None, per_gpu: int = 1,
                 quiet: bool = True, task=None):
        import ray

        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS") or None
        self.local = address is None
        kw = dict(include_dashboard=False, log_to_driver=not quiet, logging_level="ERROR")
        if self.local:
            n = workers or os.cpu_count() or 1
            kw.update(num_cpus=n, num_gpus=_local_gpus(), object_store_memory=200 * 2**20)
            ray.init(**kw)
        else:
            ray.init(address=address, runtime_env={"working_dir": str(REPO), "excludes": EXCLUDES}, **kw)
        if self.local:
            _start_watchdog(ray)
        res = ray.cluster_resources()
        self.gpu = res.get("GPU", 0) >= 1
        slots = int(res.get("GPU", 0) if self.gpu else res.get("CPU", 1))
        self.slots = max(1, min(slots, workers) if workers else slots)
        self.task_is_train = task is None
        env = worker_env(self.gpu)
        if self.gpu:  # K tasks per GPU, each with its share of the memory
            slots *= per_gpu
            env.update(XLA_PYTHON_CLIENT_PREALLOCATE="false", XLA_PYTHON_CLIENT_MEM_FRACTION=f"{0.9 / per_gpu:.3f}")
            self.slots = max(1, min(slots, workers) if workers else slots)
        opts = dict(num_gpus=1 / per_gpu, num_cpus=1) if self.gpu else dict(num_cpus=1)
        self.task = ray.remote(task or train_task).options(max_retries=1, retry_exceptions=True,
                                                   runtime_env={"env_vars": env}, **opts)
        self.where = (f"local Ray instance, {self.slots} {'GPU' if self.gpu else 'CPU core'}(s)" if self.local
                      else f"Ray cluster {address}, {self.slots} {'GPU' if self.gpu else 'CPU core'}(s) at once")

    def run_round(self, specs, *, submit_kw, on_result, on_error, stop=lambda: False) -> None:
        """Run ``specs`` (at most ``self.slots`` at once, in order); ``submit_kw(spec)`` gives the
        task's keyword arguments; ``on_result(spec, result)`` / ``on_error(spec, exc)`` as each ends;
        nothing new is submitted once ``stop()`` is true."""
        ray = self.ray
        todo, running = list(specs), {}
        first = True  # the first tasks start whatever the clock says (as ``run_local``'s first configuration)
        while running or (todo and not stop()):
            while todo and len(running) < self.slots and (first or not stop()):
                spec = todo.pop(0)
                kw = submit_kw(spec)
                if self.local and self.task_is_train:
                    kw["repo"] = str(REPO)
                running[self.task.remote(spec, **kw)] = spec
            first = False
            if not running:
                break
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                spec = running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as e:
                    on_error(spec, e)
                    continue
                on_result(spec, result)

    def close(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


# ---- the grid's runners (``lib.grid`` parses the command line, plans, and calls one of these) --------
class _Plan:
    """What the runners share: the grid's settings, which configurations save their models, the
    trainings other grids' records hold, the deadline, and the progress line."""

    def __init__(self, specs, a, out, where):
        self.specs, self.a, self.out, self.where = specs, a, out, where
        self.t0 = time.perf_counter()
        self.deadline = None if a.budget_min is None else time.time() + 60 * a.budget_min
        self.widget_models = ({G.R.training_key(s.training_fields(s.seeds[0])) for s in G.widget_grid(a.profile)}
                              if a.grid == "main" else set())
        self.trained = frozenset()
        if a.grid != "main":  # its main-grid configurations are read from the main grid's records
            main_files = {REPO / "data" / "results" / f"main-{a.profile}.jsonl",
                          Path(G.default_out("main", a.profile)).resolve()}
            self.trained = frozenset(G.main_trainings(G.R.iter_records(sorted(main_files), validate=False)))
        self.command = G.grid_command(a.grid, a.profile, a.out)

    def save_folder(self, spec):
        """Where ``spec``'s first seed's model is saved (None: not saved)."""
        save = self.a.save_params
        if save is None and self.a.grid in ("widget", "main"):
            save = "data/params"
        if self.a.grid == "main" and G.R.training_key(spec.training_fields(spec.seeds[0])) not in self.widget_models:
            save = None  # the main grid keeps only the models the widget grid reads from it
        if self.a.grid == "budget" and spec.loops > 1:  # every seed of its looped cells (issue 21 §1)
            return save or BUDGET_PARAMS
        return save if (spec.blocks == 1 and save) else None

    def save_seeds(self, spec) -> str:
        """Which seeds' models ``save_folder`` keeps: all of the budget grid's looped cells, else the first."""
        return "all" if self.a.grid == "budget" and spec.loops > 1 else "first"

    def todo_seeds(self, spec) -> tuple:
        """The seeds of ``spec`` neither in the results file nor in another grid's records."""
        done = G.R.done_keys(self.out)
        return tuple(x for x in spec.seeds if G.R.training_key(spec.training_fields(x)) not in self.trained
                     and G.R.record_key(spec.key_fields(x)) not in done)

    def report(self, i, spec, recs) -> None:
        shared = all(G.R.training_key(spec.training_fields(x)) in self.trained for x in spec.seeds)
        status = (" ".join(f"{r['test_acc'] * 100:.1f}" for r in recs) if recs else
                  "skipped (the main grid's records hold this training)" if shared else "skipped (recorded)")
        print(f"[{i}/{len(self.specs)}{self.where} {time.perf_counter() - self.t0:.0f}s] {spec.label()} "
              f"lr={spec.train_config().lr:g}: {status}",
              flush=True)

    def budget_reached(self, what: str = "") -> int:
        left = len(G.R.missing([s.key_fields(x) for s in self.specs for x in s.seeds], self.out))
        print(f"budget of {self.a.budget_min:g} min reached{self.where} after {time.perf_counter() - self.t0:.0f}s: "
              f"{what}{left} runs left; rerun the same command to go on", flush=True)
        return 0


def run_local(specs, a, out, shard, where) -> int:
    """Every configuration in turn, in this process."""
    import zipfile

    from lib.run import INTERRUPTED, cli_message
    from lib.train import Interrupted  # jax: only once something trains (not for --dry-run or bad arguments)

    plan = _Plan(specs, a, out, where)
    ran = set()
    for i, spec in enumerate(G._planned(specs, a, out, shard, ran), 1):
        if plan.deadline is not None and time.time() >= plan.deadline:
            return plan.budget_reached()
        try:
            recs = G.run(spec, out, save_params=plan.save_folder(spec), save_seeds=plan.save_seeds(spec),
                         command=plan.command, deadline=plan.deadline, trained=plan.trained)
        except (ValueError, OSError, IndexError, KeyError, zipfile.BadZipFile) as e:
            print(f"error in {spec.command(out)}: {cli_message(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:  # the checkpoint holds the last evaluation; records are written whole
            print(INTERRUPTED, file=sys.stderr)
            return 130
        except Interrupted as e:
            return plan.budget_reached(f"{spec.label()} {e}; ")
        plan.report(i, spec, recs)
    return 0


def run_ray(specs, a, out, shard, where) -> int:
    """Every configuration as a Ray task (``lib.launch``); this process writes every record. The
    budget grid runs in rounds (``lib.grid.plan_round``: up to its last chunk pilot, then the rest):
    it is planned again once a round's tasks have all finished."""
    import dataclasses as dc

    from lib.run import INTERRUPTED

    plan = _Plan(specs, a, out, where)
    got = []
    restore = lambda: None  # noqa: E731
    launcher = None
    failed, stopped, counter = [], [], [0]
    try:
        launcher = RayLauncher(address=a.address, workers=a.workers, per_gpu=a.per_gpu)
        restore = stop_on_signals(got)  # after ray.init, which sets a SIGTERM handler of its own
        print(f"running on {launcher.where}", flush=True)
        if a.budget_min is not None:  # the budget counts from when the tasks can start
            plan.deadline = time.time() + 60 * a.budget_min
        ran = set()
        while True:
            todo = [s for s in specs if s not in ran]
            if not todo:
                break
            todo = G.plan_round(todo) if a.grid == "budget" else todo
            ran.update(todo)
            batch = []
            for spec in todo:
                seeds = plan.todo_seeds(spec)
                if seeds:
                    batch.append(dc.replace(spec, seeds=seeds))
                else:
                    counter[0] += 1
                    plan.report(counter[0], spec, [])

            def submit_kw(spec):
                return dict(save_params=plan.save_folder(spec) is not None, save_seeds=plan.save_seeds(spec),
                            command=plan.command, deadline=plan.deadline, trained=plan.trained)

            def on_result(spec, result):
                counter[0] += 1
                if "interrupted" in result:
                    stopped.append(f"{spec.label()} {result['interrupted']}")
                    return
                G.R.append_records(out, result["records"])  # the one writer
                folder = plan.save_folder(spec)
                for name, data in result["params"].items():
                    _write_atomic(Path(folder) / name, data)
                Path(result["checkpoint"]).unlink(missing_ok=True)  # only now: the records are on disk
                plan.report(counter[0], spec, result["records"])

            def on_error(spec, exc):
                counter[0] += 1
                failed.append(spec)
                print(f"error in {spec.command(out)} (tried twice): {error_text(exc)}", file=sys.stderr, flush=True)

            def stop():
                return plan.deadline is not None and time.time() >= plan.deadline

            launcher.run_round(batch, submit_kw=submit_kw, on_result=on_result, on_error=on_error, stop=stop)
            if a.grid != "budget" or stopped or stop():
                break
            specs = G.replan(a, shard)
            plan.specs = specs
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the tasks stop with the Ray instance; checkpoints hold them
        print(INTERRUPTED, file=sys.stderr)
        return 143 if got else 130
    finally:
        if launcher is not None:
            launcher.close()
        restore()
    if stopped or stop_reached(plan):
        return plan.budget_reached("; ".join(stopped) + ("; " if stopped else ""))
    if failed:
        print(f"{len(failed)} configuration(s) failed twice (above); the others are recorded", file=sys.stderr)
        return 1
    return 0


def stop_reached(plan) -> bool:
    return plan.deadline is not None and time.time() >= plan.deadline and bool(
        G.R.missing([s.key_fields(x) for s in plan.specs for x in s.seeds], plan.out))



#: a process that outlives the driver only to stop the local Ray instance's processes when the driver
#: is killed (SIGKILL leaves no chance to shut Ray down, and Ray's agents would run on, orphaned).
#: Reading every thread's children in /proc twice a second cost 1.7 % of a core beside a grid; every
#: 2 s it is a quarter of that.
_WATCHDOG = r"""
import os, sys, time
driver, known = int(sys.argv[1]), set(int(p) for p in sys.argv[2:])
def alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] not in "ZX"
    except OSError:
        return False
def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            out += [int(c) for c in open(f"/proc/{pid}/task/{t}/children").read().split()]
    except OSError:
        pass
    return out
def walk(known):  # the processes of the Ray instance, grown by their new children
    stack = list(known)
    while stack:
        for c in children(stack.pop()):
            if c not in known:
                known.add(c)
                stack.append(c)
    return set(p for p in known if alive(p))
tick = 0
while alive(driver):  # the driver is looked at every 0.5 s; the tree, costlier to read, every 2 s
    if tick % 4 == 0:
        known = walk(known)
    tick += 1
    time.sleep(0.5)
known = walk(known)  # and once more when the driver is gone
time.sleep(2)  # a driver that exits normally has shut Ray down by now
for p in known:
    try:
        os.kill(p, 9)
    except OSError:
        pass
"""


def _start_watchdog(ray) -> None:
    """Start ``_WATCHDOG`` for this driver and the local Ray instance's processes (Linux only)."""
    import subprocess

    if not os.path.isdir("/proc/self/task"):
        return
    try:
        node = ray._private.worker._global_node
        pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
    except AttributeError:  # another Ray: its own clean-up only
        return
    subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), *map(str, pids)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def _local_gpus() -> int:
    """GPUs JAX would see on this machine, without importing JAX in the driver (``nvidia-smi``)."""
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` whole or not at all (a temporary file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def error_text(exc: BaseException) -> str:
    """The last line of a task's error (a RayTaskError carries the worker's traceback)."""
    cause = getattr(exc, "cause", None)
    if cause is not None:
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def stop_on_signals(got: list):
    """SIGTERM behaves like Ctrl-C in the driver (KeyboardInterrupt; the signal is appended to
    ``got``), so the Ray instance is shut down and every task stops; returns a function that
    restores the old handler."""
    def handler(signum, frame):
        got.append(signum)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)


__all__ = ["LAUNCHERS", "ONE_CORE_XLA_FLAGS", "RayLauncher", "train_task", "worker_env", "run_local", "run_ray",
           "error_text", "stop_on_signals", "EXCLUDES"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit("lib.launch is run through python -m lib.grid")
