"""tools/commit_records.py: the grid's new records go into their own commit, named by what they hold;
tools/carry.py: checkpoints of configurations in flight go across a session's end."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "commit_records.py"


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _rec(seed, acc, **kw):
    return dict(dict(dataset="Libras", ssm="lru", blocks=1, loops=6, reshape="none", chunk=1, tag="main",
                     commit="3a637ba0000", seed=seed, test_acc=acc, wall_s=779.0), **kw)


@pytest.fixture
def repo(tmp_path):
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "config", "user.email", "t@example.org")
    _git(tmp_path, "config", "user.name", "t")
    res = tmp_path / "data" / "results"
    res.mkdir(parents=True)
    (res / "budget-budget.jsonl").write_text(json.dumps(_rec(1, 0.5)) + "\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-q", "-m", "start")
    return tmp_path


def _run(cwd, *args):
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=cwd, capture_output=True, text=True)


def test_new_records_get_their_own_commit_and_nothing_else_is_swept_in(repo):
    f = repo / "data" / "results" / "budget-budget.jsonl"
    with f.open("a") as fh:
        for seed, acc in ((2, 0.90), (3, 0.86)):
            fh.write(json.dumps(_rec(seed, acc)) + "\n")
    (repo / "other.txt").write_text("work in progress\n")
    _git(repo, "add", "other.txt")  # staged, unrelated: must stay out of the records commit
    params = repo / "data" / "params" / "budget"
    params.mkdir(parents=True)
    (params / "m.json").write_text("{}")
    r = _run(repo, "--params", "data/params/budget")
    assert r.returncode == 0, r.stderr
    subject = _git(repo, "log", "-1", "--format=%s")
    assert subject.startswith("records: budget-budget, 1 configuration(s): Libras lru 1×6 none (main): 88.00 ± 2.83")
    assert "(2 seeds, 779 s, code 3a637ba)" in subject  # made before CPU seconds were counted: wall only
    files = set(_git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert files == {"data/results/budget-budget.jsonl", "data/params/budget/m.json"}
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["other.txt"]  # still staged, not committed
    again = _run(repo)
    assert again.returncode == 0 and again.stdout.strip() == "nothing new"


def test_the_message_gives_cpu_seconds_where_the_records_counted_them(repo):
    f = repo / "data" / "results" / "budget-budget.jsonl"
    with f.open("a") as fh:
        for seed in (2, 3):
            fh.write(json.dumps(_rec(seed, 0.9, dataset="ERing", wall_s=1264.3, cpu_s=579.3)) + "\n")
    assert _run(repo).returncode == 0
    assert "ERing lru 1×6 none (main): 90.00 ± 0.00 (2 seeds, 1264 s, 579 s CPU, code 3a637ba)" in \
        _git(repo, "log", "-1", "--format=%s")


def test_a_corrupt_results_line_commits_nothing(repo):
    f = repo / "data" / "results" / "budget-budget.jsonl"
    with f.open("a") as fh:
        fh.write('{"dataset": "Libras", "ssm": \n')
    head = _git(repo, "rev-parse", "HEAD")
    r = _run(repo)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert _git(repo, "rev-parse", "HEAD") == head


# ---- tools/carry.py: checkpoints of configurations in flight, across a session's end ----------------
CARRY = TOOL.with_name("carry.py")


def _ckpt(path, step, cpu_s=100.0):
    from lib.store import save_checkpoint

    save_checkpoint(path, dict(step=step, seed_steps=5 * step, wall_s=2 * cpu_s, cpu_s=cpu_s),
                    state=[np.full(3, step, np.float32)])


def _carry(cwd, *args, ckpt):
    return subprocess.run([sys.executable, str(CARRY), *args, "--ckpt", str(ckpt)], cwd=cwd,
                          capture_output=True, text=True)


def test_carry_saves_restores_and_never_goes_back_in_steps(repo, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    _ckpt(ckpt / "SCP1_lrcssm_b6x1_none1_budget_aa.npz", 1250)
    _ckpt(ckpt / "SCP1_lrcssm_b1x6_none1_budget_bb.npz", 500)
    (repo / "other.txt").write_text("work in progress\n")
    _git(repo, "add", "other.txt")  # staged, unrelated: stays out of the carry commit
    r = _carry(repo, "save", ckpt=ckpt)
    assert r.returncode == 0, r.stderr
    assert _git(repo, "log", "-1", "--format=%s").strip() == ("carry: 2 checkpoint(s) in flight: SCP1_lrcssm_b1x6_none1_budget "
                                                      "step 500; SCP1_lrcssm_b6x1_none1_budget step 1250")
    files = set(_git(repo, "show", "--name-only", "--format=", "HEAD").split())
    assert files == {"data/carry/README.md", "data/carry/ckpt/SCP1_lrcssm_b6x1_none1_budget_aa.npz",
                     "data/carry/ckpt/SCP1_lrcssm_b1x6_none1_budget_bb.npz"}
    assert "| `SCP1_lrcssm_b6x1_none1_budget_aa.npz` | 1250 | 6250 | 100 |" in (repo / "data/carry/README.md").read_text()
    assert _git(repo, "diff", "--cached", "--name-only").split() == ["other.txt"]

    new = tmp_path_factory.mktemp("new_machine")
    _ckpt(new / "SCP1_lrcssm_b1x6_none1_budget_bb.npz", 750)  # further along than the carried one: kept
    r = _carry(repo, "restore", ckpt=new)
    assert r.returncode == 0, r.stderr
    from lib.store import load_checkpoint

    assert load_checkpoint(new / "SCP1_lrcssm_b6x1_none1_budget_aa.npz")[0]["step"] == 1250
    assert load_checkpoint(new / "SCP1_lrcssm_b1x6_none1_budget_bb.npz")[0]["step"] == 750
    assert not (repo / "data" / "carry").exists()
    assert _git(repo, "log", "-1", "--format=%s").startswith("carry: 2 checkpoint(s) restored")
    assert "data/carry" not in _git(repo, "ls-files")
    assert _carry(repo, "restore", ckpt=new).stdout.strip() == "nothing to restore"


def test_carry_save_never_drops_an_unrestored_checkpoint_and_a_corrupt_one_commits_nothing(repo, tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    _ckpt(ckpt / "a.npz", 250)
    _ckpt(ckpt / "b.npz", 250)
    assert _carry(repo, "save", ckpt=ckpt).returncode == 0
    head = _git(repo, "rev-parse", "HEAD")
    (ckpt / "a.npz").unlink()  # a new machine's folder, before `restore`: saving would lose a.npz
    r = _carry(repo, "save", ckpt=ckpt)
    assert r.returncode == 2 and "a.npz" in r.stderr and "restore" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (repo / "data/carry/ckpt").iterdir()) == ["a.npz", "b.npz"]
    assert _git(repo, "rev-parse", "HEAD") == head
    _ckpt(ckpt / "a.npz", 500)
    (ckpt / "c.npz").write_bytes(b"not a zip")
    r = _carry(repo, "save", ckpt=ckpt)
    assert r.returncode == 2 and r.stderr.startswith("error:") and "c.npz" in r.stderr and "Traceback" not in r.stderr
    assert _git(repo, "rev-parse", "HEAD") == head and not _git(repo, "status", "--porcelain", "data/carry")
