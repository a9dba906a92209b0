"""What the studies share: finding an earlier run in a folder, its training time, and typed CSV files of rows."""
import csv
from pathlib import Path

from ..io import atomic_write
from ..training import read_log


def logged_steps(run_dir) -> int | None:
    """Steps of an earlier run in run_dir with a checkpoint, else None."""
    ok = (Path(run_dir) / "checkpoint.safetensors").exists() and (Path(run_dir) / "log.csv").exists()
    return int(read_log(run_dir)[-1]["step"]) if ok else None


def train_seconds(run_dir) -> float:
    """Training time of a finished run from its log's timestamps (extrapolated over the first interval)."""
    log = read_log(run_dir)
    if len(log) < 2:
        return float("nan")
    return (log[-1]["time"] - log[0]["time"]) * log[-1]["step"] / (log[-1]["step"] - log[0]["step"])


def write_rows(rows: list[dict], path, fields: list[str]) -> None:
    """Rows as a CSV file with these columns, written atomically."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)
    atomic_write(path, write)


def read_rows(path, ints=(), floats=()) -> list[dict]:
    """A CSV file's rows, with the named columns as ints and floats (columns a file lacks are skipped)."""
    with open(path) as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ints:
            if k in r:
                r[k] = int(r[k])
        for k in floats:
            if k in r:
                r[k] = float(r[k])
    return rows
