"""Training a class-conditional DiT (paper §4 "Training"): AdamW (the paper: lr 1e-4, no weight decay; short runs:
the quick recipe of recipes.py, with a linear lr warm-up), EMA of the weights, label dropout 0.1 for classifier-free
guidance, the hybrid loss of `diffusion.training_losses`.

`objective="flow"` trains the same DiT with flow matching instead (SiT; `ditlab.diffusion.flow`): continuous
t ∈ [0, 1], uniform or logit-normal, and the prediction target of the chosen path.

`train(TrainConfig(...))` or `ditlab train ...`; multi-GPU through `torchrun --nproc_per_node N -m ditlab train ...`
(DistributedDataParallel; each rank takes every world_size-th sample of one seeded permutation, and noise,
timesteps and label dropout come from one generator shared by all ranks, so N processes reproduce the loss of
one process with the same global batch). A run folder holds `checkpoint.safetensors` (everything needed to resume),
`ema.safetensors` (the EMA weights, loadable by `ditlab.load_model(run_dir)`), `config.json` (every option as
resolved, the recipe and the precision, with the reasons), `log.csv`, `samples/` and, at the end, `metrics.json`
(time and the verdict of verdict.py) with the judged grid `samples.png`; rundir.py says what protects the folder,
resume.py what a resumed run may change.
"""
import json
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..checkpoint import save_model
from ..data import encode_latents, load_dataset, load_vae
from ..io import atomic_write, resolve_device, save_grid
from ..model import DiT
from ..sampling import sample
from .config import TrainConfig, build_model_config, build_objective, describe_objective
from .ema import EMA
from .interrupt import DeferredInterrupt
from .hardware import explain_precision, init_distributed, on_rank0
from .log import append_row, read_log, trim_log
from .recipes import format_recipe, keep_resumed, resolve_recipe
from .resume import check_data, describe, plan_resume
from .rundir import run_folder
from .state import load_state, save_state, stored_train_config
from .verdict import format_verdict, run_verdict, write_metrics


def _batch_noise(gen, n_global, rank, world, shape, objective, dropout, device):
    """Timesteps, noise and label-drop flags for the whole global batch from the shared generator; this rank
    keeps rows rank::world (the same rows its data indices occupy in the one-process batch)."""
    if hasattr(objective, "sample_t"):  # flow matching: continuous t, uniform or logit-normal
        t = objective.sample_t(n_global, gen)
    else:
        t = torch.randint(0, objective.num_timesteps, (n_global,), generator=gen)
    noise = torch.randn((n_global, *shape), generator=gen)
    drop = (torch.rand(n_global, generator=gen) < dropout).long()
    return t[rank::world].to(device), noise[rank::world].to(device), drop[rank::world].to(device)


def _indices(n_data: int, step: int, batch: int, rank: int, world: int, seed: int) -> torch.Tensor:
    """This rank's data indices for `step`: a seeded permutation per epoch, strided across ranks
    (DistributedSampler's layout). A pure function of the step, so resuming needs no sampler state."""
    per_epoch = n_data // batch
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed + epoch))
    local = batch // world
    return perm[rank::world][k * local:(k + 1) * local]


def train(config: TrainConfig | dict | None = None, callback=None, dataset=None, **kwargs) -> dict:
    """Train a DiT; returns dict(model, ema, step, log, out_dir, config, classes, train_config (the resolved
    TrainConfig), recipe, precision).

    Options left unset (None) get the values of a recipe chosen for the run's scale (recipes.py); the run ends with
    a judged sample grid and a verdict where a judge exists for the data (verdict.py; `verdict=False` skips it).

    `callback(event, info)` is called on rank 0 with event "log" (info: step, loss, mse, vb, img_per_s,
    elapsed) and "samples" (info: step, images (N, C, H, W) in [-1, 1]) — the notebooks' live dashboard.
    `dataset` may be given directly (an `ImageDataset`); otherwise `config.data` is loaded."""
    t_start, cpu_start = time.perf_counter(), time.process_time()
    if config is None:
        cfg = TrainConfig(**kwargs)  # every option is checked here, before anything is loaded
    elif isinstance(config, (dict, TrainConfig)):
        cfg = TrainConfig.from_dict({**(config if isinstance(config, dict) else asdict(config)), **kwargs})
    else:
        raise TypeError(f"config must be a TrainConfig, a dict or None, got {type(config).__name__}")
    rank, world = init_distributed()
    _check_batch(cfg, world)
    device = resolve_device(cfg.device)
    resolved = [cfg]  # _train appends the config with the recipe's values filled in
    with ExitStack() as stack:  # rank 0 holds the run folder (rundir.py) until the run ends, however it ends
        on_rank0(lambda: stack.enter_context(run_folder(cfg.out_dir, cfg.resume, cfg.overwrite)), rank, world, device)
        try:
            return _train(cfg, rank, world, device, callback, dataset, resolved, (t_start, cpu_start))
        except RuntimeError as e:  # torch.OutOfMemoryError on GPUs, a RuntimeError from the CPU allocator
            msg = str(e).lower()
            if not (isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or "can't allocate memory" in msg):
                raise
            batch = resolved[-1].batch_size
            raise MemoryError(f"out of memory on {device} with batch_size={batch}: try a smaller --batch-size "
                              f"(e.g. {max(1, (batch or 2) // 2)}), --grad-checkpointing"
                              + (", or --precision bf16" if device.type == "cuda" else "")
                              + f"; checkpoint.safetensors in {cfg.out_dir} (if any) is kept. "
                              f"({str(e).splitlines()[0][:200]})") from None


def _check_batch(cfg: TrainConfig, world: int) -> None:
    if cfg.batch_size is not None and cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world})")


def _train(cfg: TrainConfig, rank: int, world: int, device: torch.device, callback, dataset, resolved, start) -> dict:
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.safetensors"
    kept = ()
    if cfg.resume:  # the options not given again keep the run's values (recipes.py), then resume.py checks changes
        cfg, kept = keep_resumed(cfg, stored_train_config(ckpt_path))
    meta, _ = plan_resume(ckpt_path, cfg) if cfg.resume else ({}, {})  # refused changes fail before the data
    if dataset is None:
        dataset = load_dataset(cfg.data, split="train", image_size=cfg.image_size, channels=cfg.channels,
                               limit=cfg.limit, seed=cfg.seed)
        if cfg.vae:  # paper §3: train on 8x smaller VAE latents, encoded once and cached on disk
            dataset = encode_latents(dataset, load_vae(cfg.vae, device=device), device=device, progress=cfg.progress)
    size = dataset.image_size
    cfg, recipe = resolve_recipe(cfg, (size, size) if isinstance(size, int) else tuple(size), kept)
    resolved.append(cfg)
    changes = plan_resume(ckpt_path, cfg)[1] if cfg.resume else {}  # with the recipe's values filled in
    _check_batch(cfg, world)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the dataset ({len(dataset)} images)")
    mcfg = build_model_config(cfg, dataset)
    precision, precision_why = explain_precision(cfg.precision, device, mcfg)
    if rank == 0 and cfg.progress:
        print(format_recipe(recipe, precision, precision_why))
    fingerprint = getattr(dataset, "fingerprint", None)
    if cfg.resume:
        check_data(meta, ckpt_path, fingerprint)

    torch.manual_seed(cfg.seed)
    model = DiT(mcfg).to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # noise, timesteps, label dropout: shared by all ranks
    objective = build_objective(cfg, mcfg)
    model.objective = ema.model.objective = describe_objective(objective)  # recorded in every checkpoint
    step = load_state(ckpt_path, model, ema, opt, scaler, gen, mcfg) if cfg.resume else 0
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    fwd = torch.compile(ddp) if cfg.compile else ddp
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16) \
        if precision in ("bf16", "fp16") else nullcontext()

    log_path = out / "log.csv"
    if rank == 0:
        _write_config(out, cfg, mcfg, dataset.classes, dict(recipe=recipe, precision=precision,
                                                            precision_why=precision_why), step, changes)
        trim_log(log_path, step)  # a resumed run drops the rows logged after its checkpoint
    saved = step if cfg.resume else None  # the step checkpoint.safetensors holds
    log_rows, t_last, n_seen = [], time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=rank != 0 or not cfg.progress, dynamic_ncols=True)
    model.train()
    stop = DeferredInterrupt(enabled=world == 1)  # Ctrl-C: finish the step and save it, then stop (interrupt.py)
    try:
        while step < cfg.steps:
            idx = _indices(len(dataset), step, cfg.batch_size, rank, world, cfg.seed)
            x, y = dataset.get_batch(idx, device=device)
            t, noise, drop = _batch_noise(gen, cfg.batch_size, rank, world, x.shape[1:], objective,
                                          cfg.class_dropout_prob, device)
            for g in opt.param_groups:  # linear warm-up from 0 to lr over warmup_steps
                g["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else cfg.lr
            with autocast:
                losses = objective.training_losses(fwd, x, t, dict(y=y, force_drop_ids=drop), noise=noise)
            loss = losses["loss"].float().mean()
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            ema.update(model, step)
            step += 1
            n_seen += cfg.batch_size
            if step % cfg.log_every == 0 or step == cfg.steps or device.type == "cpu":
                stats = torch.stack([loss.detach(), losses["mse"].float().mean().detach(),
                                     losses["vb"].float().mean().detach()])
                if world > 1:
                    dist.all_reduce(stats)
                    stats /= world
                if not torch.isfinite(stats[0]):
                    bar.close()
                    raise FloatingPointError(
                        f"loss is {stats[0].item()} at step {step}: training stopped. The last good checkpoint "
                        f"({ckpt_path if ckpt_path.exists() else 'none yet'}) was kept. Try a lower lr, grad_clip=1.0 "
                        f"or precision='fp32'.")
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                row = dict(step=step, loss=stats[0].item(), mse=stats[1].item(), vb=stats[2].item(),
                           img_per_s=n_seen / (now - t_last), lr=opt.param_groups[0]["lr"], time=time.time())
                t_last, n_seen = now, 0
                log_rows.append(row)
                if rank == 0:
                    append_row(log_path, row)
                    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['img_per_s']:.0f}")
                    if callback:
                        callback("log", row)
            if step % cfg.ckpt_every == 0 or step == cfg.steps or stop.requested:  # before the sample grid
                if rank == 0:
                    try:  # the checkpoint first, then its EMA (load_model checks they hold the same step)
                        save_state(ckpt_path, model, ema, opt, scaler, gen, step, cfg, mcfg, dataset.classes,
                                   fingerprint)
                        saved = step
                        save_model(ema.model, out / "ema.safetensors", classes=dataset.classes, step=step,
                                   objective=ema.model.objective)
                    except OSError as e:  # disk full, quota, ...: atomic writes left the last checkpoint as it was
                        kept = f"the checkpoint of step {saved} is kept" if saved is not None else "no checkpoint yet"
                        raise OSError(e.errno, f"could not write the checkpoint of step {step} in {out} "
                                               f"({e.strerror or e}); {kept}. Free disk space, then continue with "
                                               f"--resume") from e
                if world > 1:
                    dist.barrier()
            if stop.requested:  # Ctrl-C: the step is finished and saved
                bar.close()
                raise KeyboardInterrupt(f"training interrupted after step {step}; its checkpoint is in {out} "
                                        "(resume=True, or --resume, continues from there)")
            if rank == 0 and cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                _sample_grid(ema.model, cfg, step, out, callback)
            bar.update(1)
    finally:
        stop.restore()
    bar.close()
    if rank == 0:
        _finish(ema.model, cfg, dataset, log_rows, out, recipe, precision, precision_why, start)
    return dict(model=model, ema=ema.model, step=step, log=log_rows, out_dir=out, config=mcfg, classes=dataset.classes,
                train_config=cfg, recipe=recipe, precision=precision)


def _write_config(out: Path, cfg: TrainConfig, mcfg, classes, how: dict, step: int, changes: dict) -> None:
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


def _sample_grid(model: DiT, cfg: TrainConfig, step: int, out: Path, callback) -> None:
    n = model.config.num_classes
    per = max(1, min(4, 40 // n))
    labels = [c for c in range(n) for _ in range(per)][:40]
    cfg_scale = cfg.sample_cfg if model.config.has_null_class else 1.0
    images = sample(model, labels, steps=cfg.sample_steps, cfg_scale=cfg_scale, seed=0, progress=False).images
    save_grid(images, out / "samples" / f"step_{step:07d}.png", nrow=2 * per)
    if callback:
        callback("samples", dict(step=step, images=images))


def _finish(model: DiT, cfg: TrainConfig, dataset, log_rows, out: Path, recipe, precision, precision_why, start) -> None:
    """The run's summary and verdict: printed, and written to metrics.json."""
    wall, cpu = time.perf_counter() - start[0], time.process_time() - start[1]
    log = read_log(out) if (out / "log.csv").exists() else log_rows  # the whole run's, also when resumed
    summary = dict(model=cfg.model, steps=cfg.steps, recipe=recipe["name"], recipe_why=recipe["why"],
                   precision=precision, precision_why=precision_why, wall_seconds=round(wall, 1),
                   cpu_seconds=round(cpu, 1), threads=torch.get_num_threads(),
                   final_loss=log[-1]["loss"] if log else None)
    if cfg.progress:
        print(f"trained {cfg.model} to step {cfg.steps} with the {recipe['name']} recipe in {precision} "
              f"({precision_why}): {wall / 60:.1f} min, {cpu / 60:.1f} CPU-min on {summary['threads']} threads")
    verdict = dict(status="skipped", reason="verdict=False")
    if cfg.verdict:
        try:
            verdict = run_verdict(model, cfg, dataset, log, grid=out / "samples.png")
        except (ValueError, OSError, ConnectionError) as e:  # e.g. no test split offline: the run itself is saved
            verdict = dict(status="failed", reason=f"{type(e).__name__}: {e}")
    if cfg.progress or verdict["status"] != "skipped":
        print(format_verdict(verdict))
    write_metrics(out, dict(summary=summary, verdict=verdict))
