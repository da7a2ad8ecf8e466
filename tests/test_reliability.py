"""Nothing wrong gets in, nothing right gets lost (issue 19, items 4-10): output paths checked before
training, read-only results files, corrupt checkpoints, merge conflicts (grid workers that stop with
their parent: tests/test_launch.py), one clear ``error:`` line instead of a traceback, Ctrl-C, and the smaller argument checks."""
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lib import data as D
from lib import results as R

REPO = Path(__file__).resolve().parents[1]
BASIC = next((f / "BasicMotions.npz" for f in D.data_folders() if (f / "BasicMotions.npz").is_file()), None)
FIXTURES = Path(__file__).parent / "fixtures"
needs_basic = pytest.mark.skipif(BASIC is None, reason="BasicMotions.npz not in the shared data")
SMOKE = ["--ssm", "s5", "--profile", "smoke", "--seeds", "1", "--max-steps", "50", "--eval-every", "50"]


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    if BASIC is not None:
        shutil.copy(BASIC, d / "BasicMotions.npz")
    return d


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if anything starts training."""
    import lib.train

    def trained(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(lib.train, "train_seeds", trained)


def _run(*argv):
    from lib.run import main

    return main([str(a) for a in argv])


def _one_error(capsys, *needles):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _record():
    return json.loads((REPO / "data/results/baseline.jsonl").read_text().splitlines()[0])


# -- 4. --out is checked before training ----------------------------------------------------------------
@needs_basic
@pytest.mark.parametrize("case", ["parent is a file", "a folder", "read-only folder", "read-only file"])
def test_an_output_that_cannot_be_written_stops_before_training(tmp_path, data_dir, capsys, no_training, case):
    if case == "parent is a file":
        (tmp_path / "afile").write_text("")
        out, needle = tmp_path / "afile" / "x.jsonl", "is a file, not a folder"
    elif case == "a folder":
        out, needle = tmp_path, "is a folder"
    elif case == "read-only folder":
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        out, needle = tmp_path / "ro" / "x.jsonl", "read-only"
    else:
        out, needle = tmp_path / "ro.jsonl", "read-only"
        out.write_text("")
        out.chmod(0o444)
    try:
        assert _run("--dataset", "BasicMotions", "--data-dir", data_dir, *SMOKE, "--out", out) == 2
        _one_error(capsys, "--out", str(out), needle)
    finally:
        (tmp_path / "ro").exists() and (tmp_path / "ro").chmod(0o755)


# -- 5. read-only results files; the file keeps its mode --------------------------------------------------
def test_append_refuses_a_read_only_file_and_keeps_the_mode_of_a_writable_one(tmp_path):
    rec = _record()
    ro = tmp_path / "ro.jsonl"
    R.append_records(ro, [rec])
    before = ro.read_text()
    ro.chmod(0o444)
    with pytest.raises(PermissionError, match="read-only"):
        R.append_records(ro, [dict(rec, seed=1)])
    assert ro.read_text() == before and (ro.stat().st_mode & 0o777) == 0o444
    assert not list(tmp_path.glob(".*.tmp"))

    rw = tmp_path / "rw.jsonl"
    R.append_records(rw, [rec])
    umask = os.umask(0)
    os.umask(umask)
    assert (rw.stat().st_mode & 0o777) == 0o666 & ~umask  # a new file: the usual mode, not 0600
    rw.chmod(0o640)
    R.append_records(rw, [dict(rec, seed=1)])
    assert (rw.stat().st_mode & 0o777) == 0o640 and len(R.iter_records(rw)) == 2


def test_append_names_a_folder_or_a_file_in_the_folder_path(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a folder"):
        R.append_records(tmp_path, [_record()])
    (tmp_path / "f").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file"):
        R.append_records(tmp_path / "f" / "x.jsonl", [_record()])


# -- 6. corrupt checkpoints -------------------------------------------------------------------------------
KW = dict(ssm="lru", blocks=1, loops=2, hidden=8, state=8, in_features=3, num_classes=2)


def _split(seed):
    from types import SimpleNamespace

    r = np.random.default_rng(seed)

    def part(n):
        y = r.integers(0, 2, n)
        X = r.normal(size=(n, 16, 3)).astype(np.float32)
        X[:, :, 0] += (2 * y - 1)[:, None] * 0.4
        return X, y

    (Xtr, ytr), (Xv, yv), (Xt, yt) = part(48), part(16), part(16)
    return SimpleNamespace(X_train=Xtr, y_train=ytr, X_val=Xv, y_val=yv, X_test=Xt, y_test=yt)


@pytest.mark.parametrize("content", [b"", b"garbage, not a zip", b"PK\x03\x04truncated"])
def test_a_corrupt_checkpoint_is_set_aside_and_the_configuration_starts_over(tmp_path, capsys, content):
    from lib.train import TrainConfig, train_seeds

    cfg = TrainConfig(lr=3e-3, batch_size=16, max_steps=20, eval_every=10, patience=5)
    ref, _ = train_seeds(KW, [_split(1)], cfg, [1], progress=False)
    ck = tmp_path / "c.npz"
    ck.write_bytes(content)
    stale = tmp_path / "c.npz.tmp"
    stale.write_bytes(b"half a write")
    got, _ = train_seeds(KW, [_split(1)], cfg, [1], progress=False, checkpoint=ck)
    err = capsys.readouterr().err
    assert str(ck) in err and "moved aside" in err and "starting this configuration over" in err
    assert (tmp_path / "c.npz.corrupt").read_bytes() == content
    assert not stale.exists()
    assert [r.test_acc for r in got] == [r.test_acc for r in ref]
    assert [h["loss"] for h in got[0].history] == [h["loss"] for h in ref[0].history]


def test_a_checkpoint_of_this_configuration_with_missing_arrays_is_set_aside(tmp_path, capsys):
    from lib import train as T

    cfg = T.TrainConfig(lr=3e-3, batch_size=16, max_steps=20, eval_every=10, patience=5)
    ck = tmp_path / "c.npz"
    with pytest.raises(T.Interrupted):
        T.train_seeds(KW, [_split(2)], cfg, [2], progress=False, checkpoint=ck, deadline=time.time())
    with np.load(ck) as z:  # same fingerprint, but the optimiser state is gone
        kept = {k: z[k] for k in z.files if not k.startswith("opt/")}
    np.savez(ck, **kept)
    got, _ = T.train_seeds(KW, [_split(2)], cfg, [2], progress=False, checkpoint=ck)
    assert "moved aside" in capsys.readouterr().err and (tmp_path / "c.npz.corrupt").exists()
    ref, _ = T.train_seeds(KW, [_split(2)], cfg, [2], progress=False)
    assert [r.test_acc for r in got] == [r.test_acc for r in ref]


def test_write_npz_flushes_before_the_rename_and_cleans_up_a_failed_write(tmp_path, monkeypatch):
    from lib import store as T

    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(T.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(T.os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    path = tmp_path / "a.npz"
    T.write_npz(path, {"x": np.arange(3)})
    assert calls[:2] == ["fsync", "replace"]
    def disk_full(f, **arrays):
        f.write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(T.np, "savez", disk_full)
    with pytest.raises(OSError, match="disk full"):
        T.write_npz(path, {"x": np.arange(4)})
    assert not (tmp_path / "a.npz.tmp").exists()
    with np.load(path) as z:
        assert z["x"].tolist() == [0, 1, 2]  # the old file is whole


# -- 7. merge reports conflicts and duplicates -------------------------------------------------------------
def test_merge_reports_conflicts_which_side_won_and_duplicates(tmp_path, capsys):
    rec = _record()
    src, into = tmp_path / "src.jsonl", tmp_path / "into.jsonl"
    R.append_records(src, [rec, dict(rec, seed=7), dict(rec, seed=8)])
    R.append_records(into, [dict(rec, test_acc=0.5), dict(rec, seed=7)])
    with open(into, "a") as f:  # a key twice in the target (written by hand, or by an old key)
        f.write(json.dumps(dict(rec, seed=9)) + "\n" + json.dumps(dict(rec, seed=9, val_acc=0.1)) + "\n")
    assert R.main(["merge", str(src), "--into", str(into)]) == 0
    out = capsys.readouterr().out
    assert "3 records read, 1 written" in out
    assert "1 record(s) already there unchanged" in out  # seed 7
    assert "1 conflict(s)" in out and "differ in test_acc" in out and f"kept {into}:1" in out
    assert "more than once" in out and "seed 9" in out
    assert R.main(["merge", str(src), "--into", str(into), "--replace"]) == 0
    out = capsys.readouterr().out
    assert "the later record replaced the earlier" in out and f"kept {src}:1" in out


# -- 8. a grid's workers stop with it: its Ray tasks and Ray instance, tests/test_launch.py -----------------


# -- 9. one clear error line instead of a traceback --------------------------------------------------------
def _ts_pair(folder, name, train_text):
    folder.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "Tiny_TEST.ts", folder / f"{name}_TEST.ts")
    (folder / f"{name}_TRAIN.ts").write_text(train_text)


@pytest.mark.parametrize("how", ["missing label", "truncated line", "empty file"])
def test_a_malformed_ts_file_is_one_error_naming_it(tmp_path, capsys, no_training, how):
    text = (FIXTURES / "Tiny_TRAIN.ts").read_text()
    bad = {"missing label": text.replace(":alpha\n", "\n", 1), "truncated line": text[:-40],
           "empty file": ""}[how]
    _ts_pair(tmp_path / "ts", "Bad", bad)
    assert _run("--dataset", "Bad", "--data-dir", tmp_path / "ts", *SMOKE, "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "Bad_TRAIN.ts", "not a readable .ts file")


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04\x14\x00broken"])
def test_a_damaged_npz_is_one_error_naming_it(tmp_path, capsys, no_training, content):
    (tmp_path / "Broken.npz").write_bytes(content)
    assert _run("--dataset", "Broken", "--data-dir", tmp_path, *SMOKE, "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "Broken.npz", "not a readable .npz file")


@needs_basic
def test_an_unknown_ssm_option_is_one_error(tmp_path, data_dir, capsys, no_training):
    assert _run("--dataset", "BasicMotions", "--data-dir", data_dir, *SMOKE, "--ssm-option", "nosuch=1",
                "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "--ssm-option nosuch", "ssm_blocks")


@needs_basic
def test_labels_that_do_not_fit_are_one_error(tmp_path, capsys, no_training):
    with np.load(BASIC) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["y_train"] = arrays["y_train"].copy()
    arrays["y_train"][0] = 99
    np.savez(tmp_path / "Labels.npz", **arrays)
    assert _run("--dataset", "Labels", "--data-dir", tmp_path, *SMOKE, "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "y_train", "Labels.npz")


@needs_basic
def test_a_read_only_checkpoint_folder_is_one_error_before_training(tmp_path, data_dir, capsys, no_training,
                                                                   monkeypatch):
    ck = tmp_path / "ck"
    ck.mkdir()
    ck.chmod(0o555)
    monkeypatch.setenv("LOOPED_SSM_CKPT_DIR", str(ck))
    try:
        assert _run("--dataset", "BasicMotions", "--data-dir", data_dir, *SMOKE, "--out", tmp_path / "o.jsonl") == 2
        _one_error(capsys, str(ck), "read-only")
    finally:
        ck.chmod(0o755)


@needs_basic
def test_error_texts_name_the_flags(tmp_path, data_dir, capsys, no_training):
    assert _run("--dataset", "BasicMotions", "--data-dir", data_dir, *SMOKE, "--reshape", "concat", "--chunk", "3",
                "--out", tmp_path / "o.jsonl") == 2
    line = _one_error(capsys, "--pad")
    assert "pad=True" not in line
    assert _run("--dataset", "BasicMotions", "--data-dir", tmp_path / "nope", *SMOKE,
                "--out", tmp_path / "o.jsonl") == 2
    line = _one_error(capsys, "--data-dir")
    assert "folder=" not in line


@needs_basic
def test_ctrl_c_in_run_and_grid_says_how_to_go_on(tmp_path, data_dir, capsys, monkeypatch):
    import lib.grid as G
    import lib.train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lib.train, "train_seeds", interrupted)
    assert _run("--dataset", "BasicMotions", "--data-dir", data_dir, *SMOKE, "--out", tmp_path / "o.jsonl") == 130
    assert "interrupted; run the same command again to go on" in capsys.readouterr().err
    monkeypatch.setattr(G, "run", interrupted)
    monkeypatch.setattr(G, "_available", lambda names: list(names))
    # the in-process runner (the Ray runner's Ctrl-C and SIGTERM: tests/test_launch.py)
    assert G.main(["--grid", "main", "--profile", "smoke", "--ssms", "s5", "--launcher", "local",
                   "--out", str(tmp_path / "g.jsonl")]) == 130
    assert "interrupted; run the same command again to go on" in capsys.readouterr().err


def _baseline(*argv):
    from lib.baseline import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("args, needle", [
    (["--data-dir", "{tmp}/nope"], "--data-dir"),
    (["--dataset-file", "Broken.npz"], "not a readable .npz file"),
    (["--seeds", "two"], "--seeds"),
    (["--seeds", "2345,2345"], "twice"),
    (["--num-kernels", "0"], "--num-kernels"),
    (["--out", "{tmp}"], "--out"),
])
def test_baseline_errors_are_one_line(tmp_path, capsys, args, needle):
    (tmp_path / "Broken.npz").write_bytes(b"PK\x03\x04broken")
    name = "BasicMotions"
    if args[0] == "--dataset-file":
        name, args = "Broken", ["--data-dir", str(tmp_path)]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    argv = ["--dataset", name, "--profile", "smoke", *args]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "b.jsonl")]
    assert _baseline(*argv) == 2
    _one_error(capsys, needle)
    assert not (tmp_path / "b.jsonl").exists()


# -- 10. smaller checks -------------------------------------------------------------------------------------
@needs_basic
def test_a_data_dir_variable_that_is_not_a_folder_is_an_error(tmp_path, capsys, monkeypatch, no_training):
    from lib import data as D

    monkeypatch.setenv(D.ENV_DATA_DIR, str(tmp_path / "typo"))
    with pytest.raises(FileNotFoundError, match="LOOPED_SSM_DATA_DIR"):
        D.data_folders()
    assert _run("--dataset", "BasicMotions", *SMOKE, "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "$LOOPED_SSM_DATA_DIR", str(tmp_path / "typo"))


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "x\\y"])
def test_a_data_set_name_with_a_path_in_it_is_refused_before_any_folder_is_touched(tmp_path, capsys, monkeypatch,
                                                                                  no_training, name):
    from lib import data as D

    def touched(*a, **k):
        raise AssertionError("a data folder was read")

    monkeypatch.setattr(D, "data_folders", touched)
    ck = tmp_path / "ck"
    monkeypatch.setenv("LOOPED_SSM_CKPT_DIR", str(ck))
    assert _run("--dataset", name, *SMOKE, "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "--dataset")
    assert not ck.exists()
    with pytest.raises(ValueError, match="plain name"):
        D.load_uea(name, folder=tmp_path)


def test_repeated_seeds_and_zero_sizes_are_refused(tmp_path, capsys, no_training):
    assert _run("--dataset", "BasicMotions", *SMOKE, "--seed-list", "2345,2345", "--out", tmp_path / "o.jsonl") == 2
    _one_error(capsys, "--seed-list", "twice")
    from lib.bench import main as bench

    assert bench(["scan", "--batch", "0", "--out", str(tmp_path / "s.json")]) == 2
    _one_error(capsys, "--batch")
    assert not (tmp_path / "s.json").exists()
