"""Training a class-conditional DiT (paper §4 "Training"): AdamW (the paper: lr 1e-4, no weight decay; short runs:
the quick recipe of recipes.py, with a linear lr warm-up), EMA of the weights, label dropout 0.1 for classifier-free
guidance, the hybrid loss of `diffusion.training_losses`. `objective="flow"` trains the same DiT with flow matching
instead (SiT; `ditlab.diffusion.flow`): continuous t ∈ [0, 1], uniform or logit-normal.

`train(TrainConfig(...))` or `ditlab train ...`; multi-GPU through `torchrun --nproc_per_node N -m ditlab train ...`
(DistributedDataParallel; each rank takes every world_size-th sample of one seeded permutation, and noise,
timesteps and label dropout come from one generator shared by all ranks, so N processes reproduce the loss of
one process with the same global batch). A run folder holds `checkpoint.safetensors` (everything needed to resume),
`ema.safetensors` (the EMA weights, loadable by `ditlab.load_model(run_dir)`), `config.json` (every option as
resolved, the recipe and the precision, with the reasons), `log.csv`, `samples/` and, at the end, `metrics.json`
(time and the verdict of eval/verdict.py) with the judged grid `samples.png`; rundir.py says what protects the
folder, resume.py what a resumed run may change.

Read `_loop` top to bottom: data → noise → loss → step → EMA → log → checkpoint. The rest sets it up and ends it.
"""
import errno
import math
import time
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import SafetensorError
from tqdm.auto import tqdm

from ..checkpoint import save_model
from ..checks import of_type
from ..data import encode_latents, load_dataset, load_vae
from ..io import resolve_device, save_grid
from ..model import DiT
from ..sampling import sample
from .advice import opt
from .config import TrainConfig, build_model_config, build_objective, describe_objective
from .ema import EMA
from .hardware import explain_precision, init_distributed, on_rank0
from .interrupt import DeferredInterrupt
from .log import Header, append_row, finish, header_text, trim_log, write_config
from .recipes import format_recipe, resolve_recipe
from .resume import check_data, keep_resumed, load_state, plan_resume, read_meta, save_state
from .rundir import run_folder


def train(config: TrainConfig | dict | None = None, callback=None, dataset=None, **kwargs) -> dict:
    """Train a DiT; returns dict(model, ema, step, log, out_dir, config, classes, train_config (the resolved
    TrainConfig), recipe, precision).

    Options left unset (None) get the values of a recipe chosen for the run's scale (recipes.py); the run ends with
    a judged sample grid and a verdict where a judge exists for the data (eval/verdict.py; `verdict=False` skips it).

    `callback(event, info)` is called on rank 0 with event "log" (info: step, loss, mse, vb, img_per_s,
    elapsed) and "samples" (info: step, images (N, C, H, W) in [-1, 1]) — the notebooks' live dashboard.
    `dataset` may be given directly (an `ImageDataset`); otherwise `config.data` is loaded."""
    start = (time.perf_counter(), time.process_time())
    of_type("config", config, (TrainConfig, dict, type(None)), "a TrainConfig, a dict or None")
    base = asdict(config) if isinstance(config, TrainConfig) else config or {}
    cfg = TrainConfig.from_dict({**base, **kwargs})  # every option is checked here, before anything is loaded
    rank, world = init_distributed()
    _check_batch(cfg.batch_size, world)
    device = resolve_device(cfg.device)
    inputs = [cfg.data] if dataset is None else []  # overwrite never deletes the data, wherever it lives
    with ExitStack() as stack, _out_of_memory_advice(device, cfg) as oom:
        # rank 0 holds the run folder (rundir.py) until the run ends, however it ends
        on_rank0(lambda: stack.enter_context(run_folder(cfg.out_dir, cfg.resume, cfg.overwrite, inputs)),
                 rank, world, device)
        r = _setup(cfg, dataset, rank, world, device)
        oom["batch_size"] = r.cfg.batch_size
        rows = _loop(r, rank, world, device, callback)
        if rank == 0:
            finish(r, rows, start)
    return dict(model=r.model, ema=r.ema.model, step=r.cfg.steps, log=rows, out_dir=r.out, config=r.mcfg,
                classes=r.data.classes, train_config=r.cfg, recipe=r.recipe, precision=r.precision)


@dataclass
class Run:
    """What the loop works with, set up by `_setup`."""
    cfg: TrainConfig
    data: object  # ImageDataset / LatentDataset
    model: DiT
    fwd: object  # the model as called: DDP-wrapped and / or compiled
    ema: EMA
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # noise, timesteps, label dropout: shared by all ranks
    objective: object  # GaussianDiffusion | FlowMatching
    autocast: object
    step: int  # where the loop starts: 0, or the checkpoint's step
    out: Path
    mcfg: object
    recipe: dict
    precision: str
    precision_why: str
    given_data: bool


def _loop(r: Run, rank: int, world: int, device: torch.device, callback) -> list[dict]:
    """The training loop of paper §4, one optimizer step per iteration -> the rows logged."""
    cfg, model, ema, opt_, scaler, objective = r.cfg, r.model, r.ema, r.opt, r.scaler, r.objective
    step, saved, rows, t_last, n_seen = r.step, r.step if cfg.resume else None, [], time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=rank != 0 or not cfg.progress, dynamic_ncols=True)
    header = Header(header_text(r), step, cfg.steps, bar, enabled=rank == 0 and cfg.progress)
    stop = DeferredInterrupt(enabled=world == 1)  # Ctrl-C: finish the step and save it, then stop (interrupt.py)
    model.train()
    try:
        while step < cfg.steps:
            # data: this rank's share of the global batch, a pure function of the step (resuming needs no sampler)
            idx = _indices(len(r.data), step, cfg.batch_size, rank, world, cfg.seed)
            x, y = r.data.get_batch(idx, device=device)  # (B, C, H, W) in [-1, 1], (B,)
            # noise: timesteps t, noise ε and label dropout, drawn for the global batch from the shared generator
            t, noise, drop = _batch_noise(r.gen, cfg.batch_size, rank, world, x.shape[1:], objective,
                                          cfg.class_dropout_prob, device)
            # loss: DDPM's L_simple + L_vb (§3, learned Σ), or flow matching's loss on the path's target
            with r.autocast:
                losses = objective.training_losses(r.fwd, x, t, dict(y=y, force_drop_ids=drop), noise=noise)
            loss = losses["loss"].float().mean()
            # step: AdamW after a linear lr warm-up, gradients optionally clipped, fp16 with a loss scaler
            for g in opt_.param_groups:
                g["lr"] = lr_at(cfg, step)
            opt_.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(opt_)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(opt_)
            scaler.update()
            # EMA: the weights that samples are drawn from (§4: decay 0.9999)
            ema.update(model, step)
            step, n_seen = step + 1, n_seen + cfg.batch_size
            # log: loss, its two terms, images per second; a loss that is not finite stops the run
            if step % cfg.log_every == 0 or step == cfg.steps or device.type == "cpu":  # every CPU step: cheap
                stats = _finite_stats(losses, world, step, r.out)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                rows.append(dict(step=step, loss=stats[0], mse=stats[1], vb=stats[2], img_per_s=n_seen / (now - t_last),
                                 lr=opt_.param_groups[0]["lr"], time=time.time()))
                t_last, n_seen = now, 0
                if rank == 0:
                    _report(r, rows[-1], bar, callback)
            # checkpoint: everything to resume from, then the EMA weights (also when Ctrl-C asked to stop)
            if step % cfg.ckpt_every == 0 or step == cfg.steps or stop.requested:
                saved = _checkpoint(r, step, saved, rank, world)
            if stop.requested:
                raise KeyboardInterrupt(f"training interrupted after step {step}; its checkpoint is in {r.out} "
                                        f"({opt('resume')} continues from there)")
            if rank == 0 and cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
                _sample_grid(ema.model, cfg, step, r.out, callback, r.data.decode if cfg.vae else None)
            bar.update(1)
            header.tick(step)
    finally:
        stop.restore()
        bar.close()
    return rows


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The lr of optimizer step `step` (0-based): a linear warm-up from 0 over warmup_steps, then constant (the paper)
    or, lr_schedule="cosine", half a cosine from lr down towards 0 at the run's last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)  # [0, 1) after the warm-up
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, done)))


def _setup(cfg: TrainConfig, dataset, rank: int, world: int, device: torch.device) -> Run:
    """The run's options (resumed and recipe-filled), data, model, EMA, optimizer, objective and step."""
    out, ckpt, meta, kept, changes = Path(cfg.out_dir), Path(cfg.out_dir) / "checkpoint.safetensors", None, (), {}
    if cfg.resume:  # the options not given again keep the run's values; refused changes fail before the data
        meta = read_meta(ckpt)
        cfg, kept = keep_resumed(cfg, meta["train"])
        plan_resume(meta, ckpt, cfg)
    given = dataset is not None
    if not given:
        dataset = load_dataset(cfg.data, split="train", image_size=cfg.image_size, channels=cfg.channels,
                               limit=cfg.limit, seed=cfg.seed)
    if cfg.vae and not hasattr(dataset, "decode"):  # paper §3: train on f x smaller VAE latents, encoded once, cached
        dataset = encode_latents(dataset, load_vae(cfg.vae, device=device), device=device, progress=cfg.progress)
    size = dataset.image_size
    cfg, recipe = resolve_recipe(cfg, (size, size) if isinstance(size, int) else tuple(size), kept)
    if cfg.resume:  # again, with the recipe's values filled in
        changes = plan_resume(meta, ckpt, cfg)
        check_data(meta, ckpt, getattr(dataset, "fingerprint", None))
    _check_batch(cfg.batch_size, world)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the dataset ({len(dataset)} images)")
    mcfg = build_model_config(cfg, dataset)
    precision, why = explain_precision(cfg.precision, device, mcfg)
    if rank == 0 and cfg.progress:
        print(format_recipe(recipe, precision, why))

    torch.manual_seed(cfg.seed)
    model = DiT(mcfg).to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    opt_ = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    objective = build_objective(cfg, mcfg)
    model.objective = ema.model.objective = describe_objective(objective)  # recorded in every checkpoint
    step = load_state(ckpt, meta, model, ema, opt_, scaler, gen, mcfg) if cfg.resume else 0
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16) \
        if precision in ("bf16", "fp16") else nullcontext()
    if rank == 0:
        write_config(out, cfg, mcfg, dataset.classes, dict(recipe=recipe, precision=precision, precision_why=why),
                      step, changes)
        trim_log(out / "log.csv", step)  # a resumed run drops the rows logged after its checkpoint
    return Run(cfg, dataset, model, torch.compile(ddp) if cfg.compile else ddp, ema, opt_, scaler, gen, objective,
               autocast, step, out, mcfg, recipe, precision, why, given)


def _batch_noise(gen, n_global, rank, world, shape, objective, dropout, device):
    """Timesteps, noise and label-drop flags for the whole global batch from the shared generator; this rank
    keeps rows rank::world (the same rows its data indices occupy in the one-process batch)."""
    if hasattr(objective, "sample_t"):  # flow matching: continuous t, uniform or logit-normal
        t = objective.sample_t(n_global, gen)  # (N,) in [0, 1]
    else:
        t = torch.randint(0, objective.num_timesteps, (n_global,), generator=gen)  # (N,) in {0, ..., T-1}
    noise = torch.randn((n_global, *shape), generator=gen)  # (N, C, H, W)
    drop = (torch.rand(n_global, generator=gen) < dropout).long()  # (N,): 1 = the null class (CFG, §3)
    return t[rank::world].to(device), noise[rank::world].to(device), drop[rank::world].to(device)


def _indices(n_data: int, step: int, batch: int, rank: int, world: int, seed: int) -> torch.Tensor:
    """This rank's data indices for `step`: a seeded permutation per epoch, strided across ranks
    (DistributedSampler's layout). A pure function of the step, so resuming needs no sampler state."""
    epoch, k = divmod(step, n_data // batch)
    perm = torch.randperm(n_data, generator=torch.Generator().manual_seed(seed + epoch))
    local = batch // world
    return perm[rank::world][k * local:(k + 1) * local]


def _check_batch(batch_size: int | None, world: int) -> None:
    if batch_size is not None and batch_size % world:
        raise ValueError(f"batch_size={batch_size} must be divisible by the number of processes ({world})")


def _finite_stats(losses: dict, world: int, step: int, out: Path) -> list[float]:
    """[loss, mse, vb] averaged over the batch (and the ranks); a loss that is not finite stops the run."""
    stats = torch.stack([losses[k].float().mean().detach() for k in ("loss", "mse", "vb")])
    if world > 1:
        dist.all_reduce(stats)
        stats /= world
    if not torch.isfinite(stats[0]):
        ckpt = out / "checkpoint.safetensors"
        raise FloatingPointError(f"loss is {stats[0].item()} at step {step}: training stopped. The last good "
                                 f"checkpoint ({ckpt if ckpt.exists() else 'none yet'}) was kept. Try a lower lr, "
                                 f"{opt('grad_clip', 1.0)} or {opt('precision', 'fp32')}.")
    return stats.tolist()


def _report(r: Run, row: dict, bar, callback) -> None:
    append_row(r.out / "log.csv", row)
    bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['img_per_s']:.0f}")
    if callback:
        callback("log", row)


def _checkpoint(r: Run, step: int, saved: int | None, rank: int, world: int) -> int | None:
    """Write checkpoint.safetensors, then ema.safetensors (load_model checks they hold the same step), on rank 0
    -> the step now saved. A full disk is an OSError naming the folder; the atomic writes kept the last one."""
    if rank == 0:
        try:
            save_state(r.out / "checkpoint.safetensors", r.model, r.ema, r.opt, r.scaler, r.gen, step, r.cfg, r.mcfg,
                       r.data.classes, getattr(r.data, "fingerprint", None))
            saved = step
            save_model(r.ema.model, r.out / "ema.safetensors", classes=r.data.classes, step=step,
                       objective=r.ema.model.objective,
                       **({"vae": getattr(r.data.vae, "name_or_path", r.cfg.vae)} if r.cfg.vae else {}))
        except (OSError, SafetensorError) as e:  # disk full, quota, ...; safetensors reports them as its own error
            reason = getattr(e, "strerror", None) or str(e)
            full = getattr(e, "errno", None) or (errno.ENOSPC if "StorageFull" in reason or "space" in reason else None)
            kept = f"the checkpoint of step {saved} in it is intact" if saved is not None else "no checkpoint yet"
            raise OSError(full, f"could not write the checkpoint of step {step} in {r.out} ({reason}); {kept}. "
                                f"Free disk space, then continue with {opt('resume')}") from None
    if world > 1:
        dist.barrier()
    return saved


def _sample_grid(model: DiT, cfg: TrainConfig, step: int, out: Path, callback, decode=None) -> None:
    """An EMA sample grid under samples/; latent runs decode it with the VAE (`decode`: latents -> pixels)."""
    n = model.config.num_classes
    per = max(1, min(4, 40 // n))
    labels = [c for c in range(n) for _ in range(per)][:40]
    cfg_scale = cfg.sample_cfg if model.config.has_null_class else 1.0
    images = sample(model, labels, steps=cfg.sample_steps, cfg_scale=cfg_scale, seed=0, progress=False).images
    images = decode(images) if decode else images  # (N, C, H, W) in [-1, 1]
    save_grid(images, out / "samples" / f"step_{step:07d}.png", nrow=2 * per)
    if callback:
        callback("samples", dict(step=step, images=images))


@contextmanager
def _out_of_memory_advice(device: torch.device, cfg: TrainConfig):
    """Out of memory (torch.OutOfMemoryError on GPUs, a RuntimeError from the CPU allocator) -> a MemoryError
    saying what to try; yields a dict where the run puts its resolved batch size."""
    info = dict(batch_size=cfg.batch_size)
    try:
        yield info
    except RuntimeError as e:
        msg = str(e).lower()
        if not (isinstance(e, torch.OutOfMemoryError) or "out of memory" in msg or "can't allocate memory" in msg):
            raise
        batch = info["batch_size"]
        raise MemoryError(f"out of memory on {device} with a batch of {batch}: try a smaller "
                          f"{opt('batch_size', max(1, (batch or 2) // 2))}, {opt('grad_checkpointing')}"
                          + (f", or {opt('precision', 'bf16')}" if device.type == "cuda" else "")
                          + f"; checkpoint.safetensors in {cfg.out_dir} (if any) is kept. "
                          f"({str(e).splitlines()[0][:200]})") from None
