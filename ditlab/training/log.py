"""What a run writes about itself: the header line before it trains, `log.csv` (one row per logged step: step,
loss, mse, vb, img_per_s, lr, time), `config.json`, and at the end its summary and verdict in `metrics.json`."""
import csv
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..eval.verdict import format_verdict, run_verdict, write_metrics
from ..io import atomic_write
from .advice import on_cli
from .config import TrainConfig
from .recipes import LONG_RUN
from .resume import describe

HEADER_AFTER = 4  # steps timed (from the second, past the warm-up) before the header line with its estimate


def header_text(r) -> str:
    """The run in one line: data and where it came from, image size, model, steps, batch, precision, folder."""
    cfg, data = r.cfg, r.data
    source = ("passed as dataset=" if r.given_data else "a local file or folder" if Path(str(cfg.data)).exists()
              else "built-in" if data.name in ("digits", "shapes") else "Hugging Face Hub")
    size = data.image_size if isinstance(data.image_size, int) else "x".join(map(str, data.image_size))
    return (f"train: {data.name or cfg.data} ({source}, {len(data)} images) at {size} px, {data.channels} ch"
            + (" (VAE latents)" if cfg.vae else "") + f" | {cfg.model} | {cfg.steps} steps"
            + (f" from step {r.step}" if r.step else "") + f", batch {cfg.batch_size} | {r.precision} | -> {r.out}")


class Header:
    """Prints the header line once the first steps are timed, with the time the rest will take."""

    def __init__(self, text: str, start: int, steps: int, bar, enabled: bool):
        self.text, self.start, self.steps, self.bar, self.enabled = text, start, steps, bar, enabled
        self.at = min(start + HEADER_AFTER + 1, steps)  # the step after which it prints
        self.t0 = None

    def tick(self, step: int) -> None:
        if not self.enabled or step > self.at:
            return
        now = time.perf_counter()
        if step == self.start + 1:
            self.t0 = (now, step)  # timed from the end of the first step: it includes one-off warm-up work
        if step == self.at:
            per = (now - self.t0[0]) / max(1, step - self.t0[1]) if step > self.t0[1] else None
            left = "" if per is None else f" | about {_duration(per * (self.steps - step))} left ({per:.3g} s/step)"
            self.bar.write(self.text + left)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def read_log(run_dir) -> list[dict]:
    """A run's log.csv as a list of dicts of floats (step, loss, mse, vb, img_per_s, lr, time), one per logged step."""
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def trim_log(path: Path, step: int) -> None:
    """Drop the rows logged after `step` (a resumed run continues from its checkpoint's step)."""
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


def write_config(out: Path, cfg: TrainConfig, mcfg, classes, how: dict, step: int, changes: dict) -> None:
    """config.json: this run's options, model config and classes, its recipe and precision with the reasons (`how`);
    a resume adds what it changed, and prints it."""
    resumes = []
    if cfg.resume:
        try:
            resumes = json.loads((out / "config.json").read_text()).get("resumes", [])
        except (OSError, ValueError):
            pass
        resumes.append(dict(step=step, changed={k: list(v) for k, v in changes.items()}))
        print(f"resuming {out} from step {step}" + (f"; from step {step} on: {describe(changes)}" if changes else ""))
    text = json.dumps(dict(train=asdict(cfg), model=mcfg.to_dict(), classes=classes, **how, resumes=resumes), indent=1)
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))


def finish(r, rows: list[dict], start: tuple[float, float]) -> None:
    """The run's summary and verdict: printed, and written to metrics.json."""
    cfg, recipe = r.cfg, r.recipe
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    log = read_log(r.out) if (r.out / "log.csv").exists() else rows  # the whole run's, also when resumed
    summary = dict(model=cfg.model, steps=cfg.steps, recipe=recipe["name"], recipe_why=recipe["why"],
                   precision=r.precision, precision_why=r.precision_why, wall_seconds=round(wall, 1),
                   cpu_seconds=round(cpu, 1), threads=torch.get_num_threads(),
                   final_loss=log[-1]["loss"] if log else None)
    if cfg.progress:
        print(f"trained {cfg.model} to step {cfg.steps} with the {recipe['name']} recipe in {r.precision} "
              f"({r.precision_why}): {wall / 60:.1f} min, {cpu / 60:.1f} CPU-min on {summary['threads']} threads")
    verdict = dict(status="skipped", reason="verdict=False")
    if cfg.verdict:
        try:
            verdict = run_verdict(r.ema.model, cfg, r.data, log, grid=r.out / "samples.png", cli=on_cli(),
                                  short_paper_run=cfg.recipe == "paper" and cfg.steps < LONG_RUN)
        except (ValueError, OSError, ConnectionError) as e:  # e.g. no test split offline: the run itself is saved
            verdict = dict(status="failed", reason=f"{type(e).__name__}: {e}")
    if cfg.progress or verdict["status"] != "skipped":
        print(format_verdict(verdict))
    write_metrics(r.out, dict(summary=summary, verdict=verdict))
