"""Training a small KL autoencoder for latent diffusion (paper §3.1; `ditlab vae`, `train_vae`).

DiT runs in the latent space of a VAE: Stable Diffusion's turns 256x256x3 images into 32x32x4 latents. This trains
a small one of the same kind — diffusers' `AutoencoderKL`, no GAN or perceptual loss — on 32 px data in minutes on
a CPU: an L1 reconstruction loss plus a small KL term that keeps the posterior q(z | x) a Gaussian near N(0, I),

    loss = |x - D(z)|_1  +  kl_weight * KL(q(z | x) || N(0, I)),      z ~ q(z | x) = N(mu(x), sigma(x)^2)

then measures its latent scale factor (1 / the std of the training latents, the recipe behind SD's 0.18215), the
PSNR of reconstructions of held-out images and, where a judge exists for the data, the judge's accuracy on the
reconstructions next to its accuracy on the originals. A run folder holds vae.safetensors + vae.json (its card)
and reconstructions.png (originals above, reconstructions below); `ditlab train --vae <folder>` trains a DiT on
its latents.
"""
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field, fields
from importlib.metadata import version
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..checks import integer, number, of_type, one_of, positive, refuse
from ..data import ImageDataset, build_vae, load_dataset, read_vae_file, save_vae, small_vae_config, vae_dir
from ..data.autoencoder import FACTORS, RUN_FILE
from ..eval import get_judge
from ..eval.metrics import conditional_accuracy
from ..eval.verdict import JUDGED, PIPELINE_CHECK
from ..io import atomic_write, resolve_device, save_grid, uint8_to_float
from .advice import opt
from .log import append_row


def _opt(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass
class VAEConfig:
    """Every option of `train_vae` / `ditlab vae` (the flags are generated from these fields)."""
    data: str = _opt("digits", "built-in name (digits, shapes), Hugging Face name, or a local .npz / .zip / folder")
    out_dir: str = _opt("runs/vae", "the run folder: vae.safetensors, vae.json, reconstructions.png, log.csv")
    steps: int = _opt(800, "optimizer steps")
    batch_size: int = _opt(32, "images per step")
    lr: float = _opt(2e-3, "AdamW learning rate (linear warm-up over 50 steps, then cosine decay to 0)")
    factor: int = _opt(4, "downsampling factor f: 32 px -> 8x8 latents (4) or 4x4 (8)")
    latent_channels: int = _opt(4, "latent channels (the SD VAE's: 4)")
    kl_weight: float = _opt(1e-5, "weight of the KL term (small: reconstructions first)")
    image_size: int | None = _opt(None, "resize the data (default: its own size; a multiple of factor)")
    channels: int | None = _opt(None, "1 or 3 to convert the data (default: its own)")
    limit: int | None = _opt(None, "train on only this many images (default: all)")
    eval_images: int = _opt(1000, "held-out images for the PSNR and the judge's accuracy")
    seed: int = _opt(0, "seed of the initial weights and the batches")
    device: str = _opt("auto", "cpu, cuda, mps or auto")
    overwrite: bool = _opt(False, "replace the VAE in out_dir (else refused)")
    progress: bool = _opt(True, "progress bar and summary")


def check_vae_config(cfg: VAEConfig) -> VAEConfig:
    """Every option checked before any data is loaded (TypeError / ValueError naming the option)."""
    for name in ("steps", "batch_size", "latent_channels", "eval_images"):
        integer(name, getattr(cfg, name), min=1)
    for name in ("image_size", "limit"):
        if getattr(cfg, name) is not None:
            integer(name, getattr(cfg, name), min=1)
    positive("lr", cfg.lr)
    number("kl_weight", cfg.kl_weight, min=0)
    one_of("factor", cfg.factor, FACTORS)
    one_of("channels", cfg.channels, (None, 1, 3))
    of_type("data", cfg.data, str, "a dataset name or path")
    of_type("out_dir", cfg.out_dir, str, "a folder path")
    resolve_device(cfg.device)
    refuse(f"out_dir={cfg.out_dir!r}", [((Path(cfg.out_dir) / RUN_FILE).exists() and not cfg.overwrite,
                                         f"it holds a VAE already ({RUN_FILE}): pass {opt('overwrite')} to "
                                         f"replace it, or another {opt('out_dir', 'FOLDER')}")], FileExistsError)
    return cfg


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (peak-to-peak 2): 10 log10(4 / MSE), per image (N,)."""
    mse = (x.float() - y.float()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(4 / mse.clamp_min(1e-10))


@torch.no_grad()
def reconstruct(vae, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Images (N, C, H, W) in [-1, 1] -> D(mu(x)), the decoded posterior mean, clamped to [-1, 1]."""
    p = next(vae.parameters())
    out = [vae.decode(vae.encode(b.to(p.device, p.dtype)).latent_dist.mean).sample.float().clamp(-1, 1).cpu()
           for b in x.split(batch_size)]
    return torch.cat(out)


@torch.no_grad()
def latent_stats(vae, x: torch.Tensor, seed: int = 0, batch_size: int = 256) -> tuple[float, float]:
    """(mean, std) of latent samples z ~ q(z | x) over `x`; 1 / std is the scale factor (SD: 0.18215)."""
    p, g = next(vae.parameters()), torch.Generator().manual_seed(seed)
    zs = []
    for b in x.split(batch_size):
        post = vae.encode(b.to(p.device, p.dtype)).latent_dist
        zs.append((post.mean + post.std * torch.randn(post.mean.shape, generator=g).to(p.device)).float().cpu())
    z = torch.cat(zs)  # (N, 4, h, w)
    return z.mean().item(), z.std().item()


def _fit(vae, data, cfg: VAEConfig, device, out: Path) -> list[dict]:
    """The training loop: batches of a seeded permutation, L1 + kl_weight * KL, AdamW, warm-up + cosine lr."""
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen, rows, n = torch.Generator().manual_seed(cfg.seed), [], len(data)
    per_epoch, perm = max(1, n // cfg.batch_size), None
    log_every = max(1, cfg.steps // 40)
    vae.train()
    bar = tqdm(range(cfg.steps), desc="vae", disable=not cfg.progress, dynamic_ncols=True)
    for step in bar:
        if step % per_epoch == 0:
            perm = torch.randperm(n, generator=gen)
        k = step % per_epoch
        x, _ = data.get_batch(perm[k * cfg.batch_size:(k + 1) * cfg.batch_size], device=device)  # (B, C, H, W)
        post = vae.encode(x).latent_dist  # q(z | x): mean, std (B, 4, H/f, W/f)
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)  # reparameterised
        rec = (vae.decode(z).sample - x).abs().mean()
        kl = post.kl().mean() / x[0].numel()  # per pixel, like the L1 term
        loss = rec + cfg.kl_weight * kl
        for grp in opt.param_groups:
            grp["lr"] = cfg.lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the VAE's loss is {loss.item()} at step {step + 1}: try a lower lr")
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            rows.append(dict(step=step + 1, loss=loss.item(), l1=rec.item(), kl=kl.item(), time=time.time()))
            append_row(out / "log.csv", rows[-1])
            bar.set_postfix(l1=f"{rec.item():.4f}", kl=f"{kl.item():.3g}")
    return rows


def evaluate_vae(vae, x: torch.Tensor, labels: torch.Tensor | None = None, judge=None) -> dict:
    """PSNR of the reconstructions of `x` (N, C, H, W) in [-1, 1]; with a judge and labels, its accuracy on the
    originals and on the reconstructions (a good VAE keeps what makes a digit that digit)."""
    vae.eval()
    rec = reconstruct(vae, x)
    out = dict(psnr=round(psnr(x, rec).mean().item(), 2), n=len(x))
    if judge is not None and labels is not None:
        out.update(judge_accuracy_originals=round(conditional_accuracy(judge, x, labels), 4),
                   judge_accuracy_reconstructions=round(conditional_accuracy(judge, rec, labels), 4),
                   judge_test_accuracy=judge.info.get("test_accuracy"))
    return out


def _held_out(cfg: VAEConfig, train):
    """The held-out images: the data's test split, else the last `eval_images` of the training images (then not
    trained on) -> (train, x (N, C, H, W), labels (N,))."""
    try:
        test = load_dataset(cfg.data, split="test", image_size=cfg.image_size, channels=cfg.channels)
    except (ValueError, FileNotFoundError, ConnectionError):
        k = min(cfg.eval_images, len(train) // 10)
        test = ImageDataset(train.images[-k:], train.labels[-k:], train.classes, train.name)
        train = ImageDataset(train.images[:-k], train.labels[:-k], train.classes, train.name)
    idx = torch.arange(min(cfg.eval_images, len(test)))
    x, y = test.get_batch(idx)
    return train, x, y


def train_vae(config: VAEConfig | dict | None = None, **kwargs) -> dict:
    """Train a small AutoencoderKL -> dict(vae, out_dir, card, log); see the module doc and `VAEConfig`."""
    base = asdict(config) if isinstance(config, VAEConfig) else dict(config or {})
    for name in {**base, **kwargs}:
        one_of("train_vae option", name, [f.name for f in fields(VAEConfig)])
    cfg = check_vae_config(VAEConfig(**{**base, **kwargs}))
    t0, device, out = time.perf_counter(), resolve_device(cfg.device), Path(cfg.out_dir)
    train = load_dataset(cfg.data, split="train", image_size=cfg.image_size, channels=cfg.channels, limit=cfg.limit,
                         seed=cfg.seed)
    size = train.image_size
    refuse(f"data={cfg.data!r}", [(any(s % cfg.factor for s in train.images.shape[-2:]), f"its image size {size} "
                                   f"is not a multiple of factor={cfg.factor}: pass {opt('image_size', 32)}")])
    train, x_eval, y_eval = _held_out(cfg, train)
    refuse(f"data={cfg.data!r}", [(len(train) < cfg.batch_size, f"{len(train)} training images are fewer than "
                                                                 f"batch_size={cfg.batch_size}")])
    out.mkdir(parents=True, exist_ok=True)
    (out / "log.csv").unlink(missing_ok=True)
    vae = build_vae(small_vae_config(train.channels, cfg.factor, None, cfg.latent_channels, size), cfg.seed).to(device)
    rows = _fit(vae, train, cfg, device, out)
    seconds = time.perf_counter() - t0
    vae.eval()
    mean, std = latent_stats(vae, train.get_batch(torch.arange(min(len(train), 2000)))[0], cfg.seed)
    vae.register_to_config(scaling_factor=1 / std)  # latents * scale have unit std (SD: 0.18215)
    judge = get_judge(cfg.data, image_size=size, channels=train.channels, progress=cfg.progress,
                      smoke=cfg.steps < PIPELINE_CHECK) if train.name in JUDGED else None
    quality = evaluate_vae(vae, x_eval, y_eval, judge)
    save_grid(torch.cat([x_eval[:16], reconstruct(vae, x_eval[:16])]), out / "reconstructions.png", nrow=16,
              overwrite=True)
    card = _card(cfg, vae, train, rows, seconds, mean, std, quality)
    save_vae(vae, out / RUN_FILE, card)
    if cfg.progress:
        print(format_card(card, out))
    return dict(vae=vae, out_dir=out, card=card, log=rows)


def _card(cfg, vae, train, rows, seconds, mean, std, quality) -> dict:
    h, w = (s // cfg.factor for s in train.images.shape[-2:])
    return dict(format="ditlab-vae", data=cfg.data, dataset=train.name, n_train=len(train),
                image_size=train.image_size, channels=train.channels, factor=cfg.factor,
                latent_shape=[cfg.latent_channels, h, w], config=dict(vae.config.items()),
                params=sum(p.numel() for p in vae.parameters()), steps=cfg.steps, batch_size=cfg.batch_size,
                lr=cfg.lr, kl_weight=cfg.kl_weight, seed=cfg.seed, scale_factor=1 / std, latent_mean=mean,
                latent_std=std, final_l1=rows[-1]["l1"], eval=quality, train_seconds=round(seconds, 1),
                hardware=f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                date=time.strftime("%Y-%m-%d"), torch=torch.__version__, diffusers=version("diffusers"))


def format_card(card: dict, where) -> str:
    ev = card["eval"]
    judged = (f"; judge accuracy {ev['judge_accuracy_reconstructions']:.3f} on reconstructions vs "
              f"{ev['judge_accuracy_originals']:.3f} on the originals") if "judge_accuracy_originals" in ev else ""
    return (f"VAE trained on {card['dataset']} ({card['n_train']} images, {card['steps']} steps, "
            f"{card['train_seconds'] / 60:.1f} min): {card['image_size']} px x {card['channels']} ch -> latents "
            f"{'x'.join(map(str, card['latent_shape']))}, scale factor {card['scale_factor']:.4g}; PSNR "
            f"{ev['psnr']:.2f} dB on {ev['n']} held-out images{judged}\n  -> {Path(where) / RUN_FILE} (figure: "
            f"reconstructions.png); train a DiT on its latents: ditlab train --data {card['data']} --vae {where}")


def export_vae(run_dir, name: str, command: str, out_dir=None, hardware: str = "") -> Path:
    """A `ditlab vae` run -> `<out_dir>/<name>.safetensors` (fp16 weights) + `<name>.json` (its card, with the
    command that made it and the PSNR of the shipped fp16 weights) + `<name>.png`; out_dir: the shipped folder;
    hardware: the machine in words (default: the run's platform string)."""
    run, out = Path(run_dir), Path(out_dir or vae_dir())
    vae = read_vae_file(run / RUN_FILE)
    card = {**vae.card, "name": name, "command": command, **({"hardware": hardware} if hardware else {})}
    path = save_vae(vae, out / f"{name}.safetensors", dtype=torch.float16)
    shipped = read_vae_file(path).eval()
    x = load_dataset(card["data"], split="test", image_size=card["image_size"], channels=card["channels"]).images
    card.update(file_mb=round(path.stat().st_size / 2**20, 2),
                shipped_psnr=evaluate_vae(shipped, uint8_to_float(x[:card["eval"]["n"]]))["psnr"])
    text = json.dumps(card, indent=1)
    atomic_write(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(text))
    (out / f"{name}.png").write_bytes((run / "reconstructions.png").read_bytes())
    return path


VAE_SECTION = "## Shipped VAEs (latent diffusion)"


def write_vae_card(readme=None) -> Path:
    """The shipped VAEs' section of `data/checkpoints/README.md` (replaced, or appended after the DiT model card
    that `ditlab.zoo.write_model_card` writes), from their json cards in `data/checkpoints/vae/`."""
    readme = Path(readme or vae_dir().parent / "README.md")
    cards = [json.loads(p.read_text()) for p in sorted(vae_dir().glob("*.json"))]
    lines = [VAE_SECTION, "", "Small KL autoencoders (diffusers `AutoencoderKL`, L1 + KL loss, no GAN or LPIPS) "
             "trained with `ditlab vae`, in `vae/`: fp16 weights with the diffusers config (scale factor included) in "
             "the metadata, the card (json) and the reconstruction figure (png: test originals above, reconstructions "
             "below) beside them. `ditlab train --vae NAME` trains a DiT on their latents; "
             "`ditlab.data.load_vae(NAME)` loads one. Scale factor: 1 / std of the training latents (SD's recipe "
             "for its 0.18215). PSNR: reconstructions of the first test images (n column) by the shipped fp16 "
             "weights. Judge: a classifier trained on the real data (`ditlab.eval.get_judge`), accuracy on the "
             "reconstructions vs the originals.",
             "", "| name | data | px | latents | params | steps | train time | hardware | date | scale factor "
             "| PSNR | n | judge: reconstructions | judge: originals | size |", "|" + "---|" * 15]
    for c in cards:
        ev = c["eval"]
        lines.append(f"| `{c['name']}` | {c['data']} | {c['image_size']} | {'×'.join(map(str, c['latent_shape']))}"
                     f" | {c['params'] / 1e6:.2f} M | {c['steps']} | {c['train_seconds'] / 60:.1f} min"
                     f" | {c['hardware']} "
                     f"| {c['date']} | {c['scale_factor']:.4f} | {c['shipped_psnr']:.2f} dB | {ev['n']} | "
                     f"{_acc(ev, 'reconstructions')} | {_acc(ev, 'originals')} "
                     f"| {c['file_mb']} MB |")
    lines += [""] + [line for c in cards for line in (f"`{c['name']}`:", "", "```bash", c["command"], "```", "")]
    text = readme.read_text().split(VAE_SECTION)[0].rstrip("\n") + "\n\n" if readme.exists() else ""
    readme.write_text(text + "\n".join(lines))
    return readme


def _acc(ev: dict, which: str) -> str:
    value = ev.get(f"judge_accuracy_{which}")
    return "no judge" if value is None else f"{value:.3f}"
