"""Training a class-conditional DiT (paper §4 "Training"): AdamW at lr 1e-4 without weight decay, EMA of the
weights, label dropout 0.1 for classifier-free guidance, the hybrid loss of `diffusion.training_losses`.

`train(TrainConfig(...))` or `ditlab train ...`; multi-GPU through `torchrun --nproc_per_node N -m ditlab train ...`
(DistributedDataParallel; each rank takes every world_size-th sample of one seeded permutation, and noise,
timesteps and label dropout come from one generator shared by all ranks, so N processes reproduce the loss of
one process with the same global batch). A run folder holds `checkpoint.safetensors` (everything needed to resume),
`ema.safetensors` (the EMA weights, loadable by `ditlab.load_model(run_dir)`), `log.csv` and `samples/`.
"""
import csv
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from .checkpoint import atomic_write, load_state_dict_checked, save_model
from .configs import DiTConfig, get_config
from .model import DiT
from .respace import create_diffusion

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    model: str = "DiT-Mi/4"  # a config name (ditlab.config_names()); sized to the data by default
    model_args: dict = field(default_factory=dict)  # DiTConfig overrides, e.g. {"depth": 4}
    data: str = "digits"  # built-in name, Hugging Face name, or a local .npz / .zip / folder
    image_size: int | None = None  # resize the data (default: the data's own size)
    channels: int | None = None  # 1 or 3 to convert the data (default: its own)
    limit: int | None = None  # use only this many training images
    vae: str | None = None  # latent mode: a diffusers AutoencoderKL (local folder or Hub id); latents are cached
    out_dir: str = "runs/train"
    steps: int = 2000
    batch_size: int = 64  # global batch, split across DDP ranks
    lr: float = 1e-4
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay = min(ema_decay, (1 + step) / (10 + step)): EMA useful in short runs
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True
    grad_clip: float | None = None
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto: bf16 on GPUs that have it, fp16 + grad scaler on older GPUs, fp32 on CPU
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    log_every: int = 25
    ckpt_every: int = 500
    sample_every: int = 500  # 0: never; an EMA sample grid PNG under samples/
    sample_steps: int = 25
    sample_cfg: float = 4.0
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        for name in ("steps", "batch_size", "log_every", "ckpt_every", "sample_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be >= 0, got {self.sample_every}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be None or > 0, got {self.grad_clip}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        if set(d) - known:
            raise ValueError(f"unknown TrainConfig fields {sorted(set(d) - known)}; valid: {sorted(known)}")
        return cls(**d)


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # a T4 emulates bf16 slowly: only native support counts
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    return "fp32"


def _dist() -> tuple[int, int]:
    """(rank, world_size), starting the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def build_model_config(cfg: TrainConfig, data) -> DiTConfig:
    """The model config sized to the data; explicit conflicting overrides are an error."""
    size = data.image_size
    sized = dict(input_size=size if isinstance(size, int) else tuple(size), in_channels=data.channels,
                 num_classes=data.num_classes, class_dropout_prob=cfg.class_dropout_prob, learn_sigma=cfg.learn_sigma)
    for k in ("input_size", "in_channels", "num_classes"):
        if k in cfg.model_args and cfg.model_args[k] != sized[k]:
            raise ValueError(f"model_args {k}={cfg.model_args[k]!r} does not match the data ({data.name}: {k}="
                             f"{sized[k]!r}); pass image_size=/channels= to convert the data instead")
    return get_config(cfg.model, **{**sized, **cfg.model_args})


class EMA:
    """Exponential moving average of the weights (paper §4: decay 0.9999), optionally warmed up."""

    def __init__(self, model: DiT, decay: float, warmup: bool):
        self.model = DiT(model.config).to(next(model.parameters()).device).eval().requires_grad_(False)
        self.model.load_state_dict(model.state_dict())
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def update(self, model: DiT, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - d)


def _batch_noise(gen, n_global, rank, world, shape, num_timesteps, dropout, device):
    """Timesteps, noise and label-drop flags for the whole global batch from the shared generator; this rank
    keeps rows rank::world (the same rows its data indices occupy in the one-process batch)."""
    t = torch.randint(0, num_timesteps, (n_global,), generator=gen)
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


def _save_checkpoint(path: Path, model, ema, opt, scaler, gen, step, cfg, mcfg, classes) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.model.state_dict().items()})
    opt_sd = opt.state_dict()
    for i, st in opt_sd["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    tensors["rng.generator"] = gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = dict(format="ditlab-train", step=str(step), config=json.dumps(mcfg.to_dict()),
                train_config=json.dumps(asdict(cfg)), classes=json.dumps(classes),
                param_groups=json.dumps([{k: v for k, v in g.items() if k != "params"} for g in opt_sd["param_groups"]]),
                scaler=json.dumps(scaler.state_dict() if scaler.is_enabled() else {}))
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _load_checkpoint(path: Path, model, ema, opt, scaler, gen, mcfg) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        stored = DiTConfig.from_dict(json.loads(meta["config"]))
        if stored != mcfg:
            diff = {k: (v, getattr(mcfg, k)) for k, v in stored.to_dict().items() if mcfg.to_dict()[k] != v}
            raise ValueError(f"cannot resume from {path}: it was trained with a different model config "
                             f"(checkpoint vs now: {diff}); use another out_dir or the same config")
        get = {k: f.get_tensor(k) for k in f.keys()}
    load_state_dict_checked(model, {k[6:]: v for k, v in get.items() if k.startswith("model.")})
    load_state_dict_checked(ema.model, {k[4:]: v for k, v in get.items() if k.startswith("ema.")})
    state = {}
    for k, v in get.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    groups = json.loads(meta["param_groups"])
    for g, own in zip(groups, opt.state_dict()["param_groups"]):
        g["params"] = own["params"]
    opt.load_state_dict({"state": state, "param_groups": groups})
    if json.loads(meta["scaler"]):
        scaler.load_state_dict(json.loads(meta["scaler"]))
    gen.set_state(get["rng.generator"])
    torch.set_rng_state(get["rng.torch"])
    return int(meta["step"])


def train(config: TrainConfig | dict | None = None, callback=None, dataset=None, **kwargs) -> dict:
    """Train a DiT; returns dict(model, ema, step, log, out_dir, config).

    `callback(event, info)` is called on rank 0 with event "log" (info: step, loss, mse, vb, img_per_s,
    elapsed) and "samples" (info: step, images (N, C, H, W) in [-1, 1]) — the notebooks' live dashboard.
    `dataset` may be given directly (an `ImageDataset`); otherwise `config.data` is loaded."""
    if config is None:
        cfg = TrainConfig(**kwargs)
    else:
        cfg = TrainConfig.from_dict({**(config if isinstance(config, dict) else asdict(config)), **kwargs})
    rank, world = _dist()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world})")
    device = _device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    out = Path(cfg.out_dir)
    ckpt_path = out / "checkpoint.safetensors"
    if cfg.resume and not ckpt_path.exists():
        raise FileNotFoundError(f"resume=True but {ckpt_path} does not exist")
    if dataset is None:
        from .data import load_dataset

        dataset = load_dataset(cfg.data, split="train", image_size=cfg.image_size, channels=cfg.channels,
                               limit=cfg.limit, seed=cfg.seed)
        if cfg.vae:  # paper §3: train on 8x smaller VAE latents, encoded once and cached on disk
            from .latents import encode_latents, load_vae

            dataset = encode_latents(dataset, load_vae(cfg.vae, device=device), device=device, progress=cfg.progress)
    if len(dataset) < cfg.batch_size:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the dataset ({len(dataset)} images)")
    mcfg = build_model_config(cfg, dataset)

    torch.manual_seed(cfg.seed)
    model = DiT(mcfg).to(device)
    model.grad_checkpointing = cfg.grad_checkpointing
    ema = EMA(model, cfg.ema_decay, cfg.ema_warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            fused=device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # noise, timesteps, label dropout: shared by all ranks
    step = _load_checkpoint(ckpt_path, model, ema, opt, scaler, gen, mcfg) if cfg.resume else 0
    diffusion = create_diffusion("", learn_sigma=mcfg.learn_sigma)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    fwd = torch.compile(ddp) if cfg.compile else ddp
    autocast = torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16) \
        if precision in ("bf16", "fp16") else nullcontext()

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dict(train=asdict(cfg), model=mcfg.to_dict(),
                                                         classes=dataset.classes, precision=precision), indent=1))
    log_path = out / "log.csv"
    if rank == 0:
        _trim_log(log_path, step)  # a fresh run starts a new log; a resumed one drops rows past its checkpoint
    log_rows, t_last, n_seen = [], time.perf_counter(), 0
    bar = tqdm(total=cfg.steps, initial=step, desc="train", disable=rank != 0 or not cfg.progress, dynamic_ncols=True)
    model.train()
    while step < cfg.steps:
        idx = _indices(len(dataset), step, cfg.batch_size, rank, world, cfg.seed)
        x, y = dataset.get_batch(idx, device=device)
        t, noise, drop = _batch_noise(gen, cfg.batch_size, rank, world, x.shape[1:], diffusion.num_timesteps,
                                      cfg.class_dropout_prob, device)
        with autocast:
            losses = diffusion.training_losses(fwd, x, t, dict(y=y, force_drop_ids=drop), noise=noise)
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
            stats = torch.stack([loss.detach(), losses["mse"].float().mean().detach(), losses["vb"].float().mean().detach()])
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
                       img_per_s=n_seen / (now - t_last), lr=cfg.lr, time=time.time())
            t_last, n_seen = now, 0
            log_rows.append(row)
            if rank == 0:
                _append_csv(log_path, row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", img_s=f"{row['img_per_s']:.0f}")
                if callback:
                    callback("log", row)
        if rank == 0 and cfg.sample_every and (step % cfg.sample_every == 0 or step == cfg.steps):
            _sample_grid(ema.model, cfg, step, out, callback)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            if rank == 0:
                _save_checkpoint(ckpt_path, model, ema, opt, scaler, gen, step, cfg, mcfg, dataset.classes)
                save_model(ema.model, out / "ema.safetensors", classes=dataset.classes, step=step)
            if world > 1:
                dist.barrier()
        bar.update(1)
    bar.close()
    return dict(model=model, ema=ema.model, step=step, log=log_rows, out_dir=out, config=mcfg, classes=dataset.classes)


def read_log(run_dir) -> list[dict]:
    """A run's log.csv as a list of dicts of floats (step, loss, mse, vb, img_per_s, lr, time), one per logged step."""
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def _trim_log(path: Path, step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    keep = [r for r in rows if int(r["step"]) <= step]
    if len(keep) == len(rows):
        return
    path.unlink()
    for r in keep:
        _append_csv(path, r)


def _append_csv(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def _sample_grid(model: DiT, cfg: TrainConfig, step: int, out: Path, callback) -> None:
    from .sample import sample, save_grid

    n = model.config.num_classes
    per = max(1, min(4, 40 // n))
    labels = [c for c in range(n) for _ in range(per)][:40]
    cfg_scale = cfg.sample_cfg if model.config.has_null_class else 1.0
    images = sample(model, labels, steps=cfg.sample_steps, cfg_scale=cfg_scale, seed=0, progress=False).images
    save_grid(images, out / "samples" / f"step_{step:07d}.png", nrow=2 * per)
    if callback:
        callback("samples", dict(step=step, images=images))
