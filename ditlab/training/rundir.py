"""The run folder (`out_dir`) and what protects it.

- A lock: a run holds an OS-level lock (`fcntl.flock`) on `<out_dir>/.lock` from before its data is loaded
  until it returns; a second run into the same folder fails at once, naming the holder's pid. The kernel
  drops the lock of a process that dies, even by `kill -9`, so a crash never leaves a folder locked. A run
  refused before it wrote anything (bad data path, ...) removes the folder it created.
- No silent clobbering: a new run (no `resume`) refuses a folder that already holds a run's files, naming
  the two ways on: `resume=True` to continue it, or a new `out_dir` / `overwrite=True` to clear it first.
  `overwrite` deletes only the files ditlab writes into a run folder (OWN, samples/step_*.png), never a file of
  the user's (kept, and listed) nor an input of the run (the `data` file or folder, wherever it lives).
- Cleanup: files are written atomically (a temporary file renamed into place), so a process killed mid-write
  leaves a `.<name>.*.tmp` file behind (up to a whole checkpoint); the next run in the folder removes them.
"""
import os
from contextlib import contextmanager
from pathlib import Path

from ..io import check_output_dir
from .advice import opt

try:
    import fcntl  # POSIX; on Windows run folders are not locked
except ImportError:  # pragma: no cover
    fcntl = None

LOCK = ".lock"
RUN_FILES = ("checkpoint.safetensors", "ema.safetensors", "log.csv", "config.json", "samples")
OWN = (*RUN_FILES[:-1], "metrics.json", "samples.png", "loss_curve.png")  # what a run (or the demo) writes at the top


def run_files(out: Path) -> list[str]:
    """The names of a run's files present in `out` (empty for a new or empty folder)."""
    return [n for n in RUN_FILES if (out / n).exists() and (n != "samples" or any((out / n).glob("step_*.png")))]


@contextmanager
def run_folder(out_dir, resume: bool = False, overwrite: bool = False, inputs=()):
    """Hold `out_dir` for one run: create it, lock it, refuse or clear an earlier run (never deleting `inputs`,
    the paths the run reads), remove orphaned temporary files. Yields the folder's Path; the lock is released on
    exit (also on errors and Ctrl-C)."""
    out = check_output_dir(out_dir, "out_dir")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise type(e)(f"cannot create the run folder {str(out)!r} ({e.strerror or e}); choose another "
                      f"{opt('out_dir', 'DIR')}") from e
    try:
        _lock(fd, out)
        existing = run_files(out)
        if resume and "checkpoint.safetensors" not in existing:
            raise FileNotFoundError(_nothing_to_resume(out, existing))
        if existing and not resume:
            if not overwrite:
                raise FileExistsError(f"{str(out)!r} already holds a run ({', '.join(existing)}); a new run would "
                                      f"overwrite it. Continue it with {opt('resume')}, or start over with a new "
                                      f"{opt('out_dir', 'DIR')} or {opt('overwrite')}, which deletes its files first")
            clear(out, inputs)
        _remove_orphans(out)
        yield out
    finally:
        os.close(fd)  # releases the lock
        if created and [p.name for p in out.iterdir()] == [LOCK]:  # refused before writing anything: leave no trace
            (out / LOCK).unlink()
            out.rmdir()


def _nothing_to_resume(out: Path, existing: list[str]) -> str:
    return (f"{opt('resume')} but {out / 'checkpoint.safetensors'} does not exist"
            + (f" (the folder holds {existing}: the run stopped before its first checkpoint)" if existing else "")
            + f"; start a new run without {opt('resume')}" + (f" ({opt('overwrite')} clears the folder)" if existing else ""))


def _lock(fd: int, out: Path) -> None:
    if fcntl is None:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        raise BlockingIOError(f"{str(out)!r} is in use by another ditlab run (pid {holder}); wait for it to finish "
                              f"or stop it, or choose another {opt('out_dir', 'DIR')}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def clear(out: Path, inputs=()) -> None:
    """Delete the files a ditlab run wrote in `out` (OWN, samples/step_*.png), none of `inputs`; list the rest."""
    keep = {Path(p).resolve() for p in inputs}
    ours = [out / n for n in OWN] + sorted((out / "samples").glob("step_*.png"))
    for p in ours:
        if p.is_file() and not p.is_symlink() and p.resolve() not in keep:
            p.unlink()
    if (out / "samples").is_dir() and not any((out / "samples").iterdir()):
        (out / "samples").rmdir()
    others = sorted(p.name for p in out.iterdir() if p.name != LOCK and not p.name.endswith(".tmp"))
    if others:
        print(f"{out}: overwrite deleted the earlier run's files and kept {len(others)} that ditlab did not write: "
              + ", ".join(others[:10]) + (" ..." if len(others) > 10 else ""))


def _remove_orphans(out: Path) -> None:
    """Remove the temporary files of atomic writes that a killed process left (only ours: `.<name>.*.tmp`)."""
    orphans = [p for d in (out, out / "samples") if d.is_dir() for p in d.glob(".*.tmp") if p.is_file()]
    if orphans:
        size = sum(p.stat().st_size for p in orphans)
        for p in orphans:
            p.unlink()
        print(f"{out}: removed {len(orphans)} temporary file(s) ({size / 2**20:.1f} MB) left by an interrupted run")
