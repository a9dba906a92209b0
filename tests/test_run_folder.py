"""Run folders can't be clobbered and crashes lose only the work since the last checkpoint: a new run refuses a
folder holding a run (or clears it with overwrite), two runs never share a folder (an OS lock, released by
Ctrl-C and kill -9 alike: real processes and signals), a kill mid-write leaves the previous checkpoint and its
orphaned temporary file is removed by the next run, the EMA file never disagrees with the checkpoint, a full
disk keeps the previous checkpoint, and a failing sample grid comes after the checkpoint of its step."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT
from safetensors import safe_open
from test_train import TINY

import ditlab.io.files
from ditlab import load_model
from ditlab.data import load_dataset
from ditlab.training import train

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=128)


def _meta(path):
    with safe_open(str(path), framework="pt") as f:
        return f.metadata()


def _tensors(path, prefix=""):
    with safe_open(str(path), framework="pt") as f:
        return {k.removeprefix(prefix): f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}


# ---- refuse, overwrite, resume without a checkpoint, bad folders -----------------------------------------
def test_a_new_run_refuses_a_folder_holding_a_run_and_overwrite_clears_it(tmp_path, digits):
    d = tmp_path / "run"
    train(**{**TINY, "sample_every": 2, "sample_steps": 2}, steps=4, ckpt_every=2, out_dir=str(d), dataset=digits)
    before = {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.name != ".lock"}
    with pytest.raises(FileExistsError, match=r"already holds a run .*resume=True.*out_dir='DIR' or overwrite=True"):
        train(**TINY, steps=2, out_dir=str(d), dataset=digits)
    assert {p.name: p.stat().st_mtime_ns for p in d.iterdir() if p.name != ".lock"} == before  # nothing touched
    assert sorted(p.name for p in (d / "samples").iterdir()) == ["step_0000002.png", "step_0000004.png"]
    train(**TINY, steps=2, ckpt_every=2, out_dir=str(d), dataset=digits, overwrite=True)
    assert not (d / "samples").exists()  # the old run's sample grids went with it
    assert json.loads((d / "config.json").read_text())["resumes"] == []
    assert _meta(d / "checkpoint.safetensors")["step"] == "2"
    (tmp_path / "empty").mkdir()
    train(**TINY, steps=1, out_dir=str(tmp_path / "empty"), dataset=digits)  # an empty folder is a new run's


def test_resume_needs_a_checkpoint_and_bad_out_dirs_fail_before_the_data(tmp_path, monkeypatch):
    from ditlab.training import loop

    monkeypatch.setattr(loop, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the folder was checked"))
    with pytest.raises(FileNotFoundError, match="resume=True but .*does not exist.*without resume=True"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "new"), resume=True)
    assert not (tmp_path / "new").exists()  # a refused run leaves no folder (nor a stray .lock) behind
    (tmp_path / "kept").mkdir()
    with pytest.raises(FileNotFoundError, match="resume=True but"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "kept"), resume=True)
    assert (tmp_path / "kept").is_dir()  # ... but never removes a folder it did not create
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="out_dir .*file' is a file"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "file"))
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "file" / "run"))
    with pytest.raises(ValueError, match="choose one"):
        train(**TINY, steps=1, out_dir=str(tmp_path / "new"), resume=True, overwrite=True)
    if os.path.isdir("/proc/self"):  # a folder nobody may create, not even root
        with pytest.raises(OSError, match="cannot create the run folder '/proc/ditlab-run'"):
            train(**TINY, steps=1, out_dir="/proc/ditlab-run")


# ---- kill -9 mid-write, and between the checkpoint and its EMA -------------------------------------------
CHILD = """
import json, os, signal, sys
import ditlab.io.files
from ditlab.training import train

kill = json.loads(sys.argv[1])  # the write to die in: {"format": ..., "step": ..., "half": bool}
real = ditlab.io.files.save_file

def save_file(tensors, path, metadata=None):
    meta = metadata or {}
    if meta.get("format") == kill["format"] and meta.get("step") == kill["step"]:
        if kill["half"]:  # die mid-write: half of the temporary file is on disk
            real(tensors, path, metadata=metadata)
            os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)
    real(tensors, path, metadata=metadata)

ditlab.io.files.save_file = save_file
train(**json.loads(sys.argv[2]))
"""


def _killed_child(kill: dict, **train_kwargs):
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(kill), json.dumps(train_kwargs)], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr


def test_kill_mid_checkpoint_keeps_the_previous_one_and_the_next_run_cleans_up(tmp_path, digits, capsys):
    d = tmp_path / "run"
    kw = dict(TINY, steps=6, ckpt_every=2, out_dir=str(d))
    _killed_child(dict(format="ditlab-train", step="4", half=True), **kw)
    orphans = list(d.glob(".*.tmp"))
    assert len(orphans) == 1 and orphans[0].name.startswith(".checkpoint.safetensors.")
    assert _meta(d / "checkpoint.safetensors")["step"] == "2" and _meta(d / "ema.safetensors")["step"] == "2"
    capsys.readouterr()
    resumed = train(**kw, resume=True, dataset=digits)
    assert "removed 1 temporary file(s)" in capsys.readouterr().out and not list(d.glob(".*.tmp"))
    full = train(**kw | {"out_dir": str(tmp_path / "full")}, dataset=digits)
    a, b = _tensors(tmp_path / "full" / "checkpoint.safetensors"), _tensors(d / "checkpoint.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to no crash
    assert resumed["step"] == full["step"] == 6


def test_kill_between_checkpoint_and_ema_never_serves_a_stale_ema(tmp_path, digits):
    d = tmp_path / "run"
    _killed_child(dict(format="ditlab", step="4", half=False), **TINY, steps=6, ckpt_every=2, out_dir=str(d))
    assert _meta(d / "checkpoint.safetensors")["step"] == "4" and _meta(d / "ema.safetensors")["step"] == "2"
    model = load_model(d)  # what `ditlab sample --ckpt run` loads: the EMA of step 4, from the checkpoint
    ema4, ema2 = _tensors(d / "checkpoint.safetensors", "ema."), _tensors(d / "ema.safetensors")
    for k, v in model.state_dict().items():
        assert torch.equal(v, ema4[k]), k
    assert any(not torch.equal(ema4[k], ema2[k]) for k in ema2)
    assert model.classes == digits.classes


# ---- two runs, one folder: the lock; Ctrl-C and kill -9 release it --------------------------------------
def _cli(out, *extra, steps=100_000):
    args = ["--model", TINY["model"], "--model-args", json.dumps(TINY["model_args"]), "--data", "digits",
            "--limit", "128", "--batch-size", "8", "--lr", "1e-3", "--log-every", "1", "--ckpt-every", "1",
            "--sample-every", "0", "--no-progress", "--steps", str(steps), "--out-dir", str(out), *extra]
    return [sys.executable, "-m", "ditlab", "train", *args]


def _wait_for_checkpoint(path, proc, timeout=180):
    t0 = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < timeout, "no checkpoint written"
        time.sleep(0.2)


def test_two_runs_never_share_a_folder_and_signals_release_the_lock(tmp_path):
    d = tmp_path / "run"
    first = subprocess.Popen(_cli(d), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(d / "checkpoint.safetensors", first)
        second = subprocess.run(_cli(d, steps=3), env=ENV, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"ditlab train: error: '{d}' is in use by another ditlab run (pid {first.pid})" in second.stderr
        for extra in (dict(resume=True), dict(overwrite=True)):  # whatever the second run asks for
            with pytest.raises(BlockingIOError, match=f"in use by another ditlab run \\(pid {first.pid}\\)"):
                train(**TINY, steps=3, out_dir=str(d), **extra)
        first.send_signal(signal.SIGINT)  # Ctrl-C
        _, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 130 and "interrupted (Ctrl-C)" in err and "--resume" in err
    step = int(_meta(d / "checkpoint.safetensors")["step"])

    third = subprocess.Popen(_cli(d, "--resume"), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while int(_meta(d / "checkpoint.safetensors")["step"]) <= step + 1:  # it holds the folder and trains
            assert third.poll() is None, third.communicate()[1]
            time.sleep(0.2)
        third.send_signal(signal.SIGKILL)  # kill -9: no cleanup code runs; the kernel drops the lock
        third.wait(timeout=60)
    finally:
        third.kill()
    step = int(_meta(d / "checkpoint.safetensors")["step"])
    last = subprocess.run(_cli(d, "--resume", steps=step + 2), env=ENV, capture_output=True, text=True, timeout=120)
    assert last.returncode == 0, last.stderr
    assert f"resuming {d} from step {step}" in last.stdout
    assert _meta(d / "checkpoint.safetensors")["step"] == str(step + 2)
    load_model(d)


# ---- disk full; sampling fails ------------------------------------------------------------------------------
def test_disk_full_during_a_checkpoint_keeps_the_previous_one(tmp_path, digits, monkeypatch):
    d = tmp_path / "run"
    real = ditlab.io.files.save_file

    def full_disk(tensors, path, metadata=None):
        if (metadata or {}).get("step") == "4":
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)  # part of the file made it before the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        real(tensors, path, metadata=metadata)

    monkeypatch.setattr(ditlab.io.files, "save_file", full_disk)
    with pytest.raises(OSError, match="could not write the checkpoint of step 4 .*No space left on device.*"
                                      "the checkpoint of step 2 in it is intact.*resume=True") as e:
        train(**TINY, steps=6, ckpt_every=2, out_dir=str(d), dataset=digits)
    assert e.value.errno == errno.ENOSPC
    assert _meta(d / "checkpoint.safetensors")["step"] == "2" and not list(d.glob(".*.tmp"))
    monkeypatch.setattr(ditlab.io.files, "save_file", real)  # space freed: the run continues (and its lock was released)
    assert train(**TINY, steps=6, ckpt_every=2, out_dir=str(d), dataset=digits, resume=True)["step"] == 6


def test_a_failing_sample_grid_comes_after_the_checkpoint_of_its_step(tmp_path, digits, monkeypatch):
    from ditlab.training import loop

    def broken(*a, **k):
        raise RuntimeError("sampling failed")

    monkeypatch.setattr(loop, "sample", broken)
    with pytest.raises(RuntimeError, match="sampling failed"):
        train(**{**TINY, "sample_every": 2}, steps=4, ckpt_every=2, out_dir=str(tmp_path / "r"), dataset=digits)
    assert _meta(tmp_path / "r" / "checkpoint.safetensors")["step"] == "2"
    assert _meta(tmp_path / "r" / "ema.safetensors")["step"] == "2"


# ---- overwrite deletes only what ditlab wrote; a real full disk; Ctrl-C exits 130 ---------------------------
def _sums(folder):
    import hashlib

    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def test_overwrite_deletes_only_the_runs_files_never_the_users_or_the_data(tmp_path, digits, capsys):
    d = tmp_path / "run"
    d.mkdir()
    data = d / "mydigits.npz"  # the run's input, inside its own folder
    import numpy as np

    np.savez(data, x_train=digits.images.numpy(), y_train=digits.labels.numpy())
    (d / "notes.txt").write_text("my notes")
    (d / "samples").mkdir()
    (d / "samples" / "favourite.png").write_bytes(b"not ditlab's")
    kw = dict(TINY, data=str(data), steps=2, ckpt_every=2, sample_every=2, sample_steps=2, out_dir=str(d))
    train(**kw)
    users = {k: v for k, v in _sums(d).items() if k in ("mydigits.npz", "notes.txt", "samples/favourite.png")}
    assert len(users) == 3 and (d / "samples" / "step_0000002.png").exists()
    capsys.readouterr()
    train(**kw, overwrite=True)
    assert "kept 3 that ditlab did not write: mydigits.npz, notes.txt, samples" in capsys.readouterr().out
    after = _sums(d)
    assert {k: after[k] for k in users} == users  # byte for byte
    assert _meta(d / "checkpoint.safetensors")["step"] == "2"


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/proc/filesystems"),
                    reason="a real full disk needs a small tmpfs, which only root can mount")
def test_a_real_full_disk_is_an_error_naming_the_folder_and_the_intact_checkpoint(tmp_path, digits):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)]).returncode:
        pytest.skip("mount -t tmpfs failed (no CAP_SYS_ADMIN in this container)")
    try:
        def fill(event, info):  # after the checkpoint of step 2, something else fills the disk
            if event == "log" and info["step"] == 3:
                with open(disk / "filler", "wb") as f:
                    try:
                        while True:
                            f.write(b"\0" * 65536)
                            f.flush()
                    except OSError:
                        pass

        with pytest.raises(OSError, match=f"could not write the checkpoint of step 4 in {disk / 'run'} .*"
                                          "the checkpoint of step 2 in it is intact") as e:
            train(**TINY, steps=6, ckpt_every=2, out_dir=str(disk / "run"), dataset=digits, callback=fill)
        assert e.value.errno == errno.ENOSPC
        assert _meta(disk / "run" / "checkpoint.safetensors")["step"] == "2" and not list((disk / "run").glob(".*.tmp"))
        (disk / "filler").unlink()
        assert load_model(disk / "run").config.num_classes == 10
    finally:
        subprocess.run(["umount", str(disk)])


def test_ctrl_c_exits_130_after_saving_its_step(tmp_path):
    d = tmp_path / "run"
    p = subprocess.Popen(_cli(d), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_checkpoint(d / "checkpoint.safetensors", p)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert "interrupted (Ctrl-C)" in err and "--resume" in err and "resume=True" not in err + out
    assert int(_meta(d / "checkpoint.safetensors")["step"]) >= 1 and _meta(d / "ema.safetensors")["step"] == \
        _meta(d / "checkpoint.safetensors")["step"]


# ---- resume from a file that is not a training checkpoint --------------------------------------------------
@pytest.mark.parametrize("damage, match", [
    (lambda m: {"format": "ditlab", "config": m["config"]}, "has no training metadata .*holds weights only"),
    (lambda m: {**m, "train_config": "{not json"}, "metadata field 'train_config' is not valid JSON"),
    (lambda m: {**m, "objective": '{"objective": "diffusion"}'}, "metadata field 'objective' must be one of"),
    (lambda m: {**m, "train_config": m["train_config"].replace('"objective": "ddpm"', '"objective": "sde"')},
     "metadata field 'train_config' objective must be one of"),
])
def test_resume_from_a_checkpoint_without_valid_training_metadata_names_the_file_and_field(tmp_path, digits, damage,
                                                                                         match):
    from ditlab.io import save_tensors

    d = tmp_path / "run"
    train(**TINY, steps=2, ckpt_every=2, out_dir=str(d), dataset=digits)
    ckpt = d / "checkpoint.safetensors"
    save_tensors(ckpt, _tensors(ckpt), damage(_meta(ckpt)))
    with pytest.raises(ValueError, match=f"{ckpt}.*{match}|{match}.*"):
        train(**TINY, steps=4, out_dir=str(d), dataset=digits, resume=True)
    with pytest.raises(ValueError, match=str(ckpt)):
        train(**TINY, steps=4, out_dir=str(d), dataset=digits, resume=True)
