"""tools/commit_records.py: the grid's new records go into their own commit, named by what they hold."""
import json
import subprocess
import sys
from pathlib import Path

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
