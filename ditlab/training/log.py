"""`log.csv`: one row per logged step (step, loss, mse, vb, img_per_s, lr, time), written as training goes."""
import csv
from pathlib import Path


def read_log(run_dir) -> list[dict]:
    """A run's log.csv as a list of dicts of floats (step, loss, mse, vb, img_per_s, lr, time), one per logged step."""
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def trim_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["step"]) <= step]
    if len(keep) == len(rows):
        return
    path.unlink()
    for r in keep:
        append_row(path, r)


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)
