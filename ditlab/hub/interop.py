"""Interop with 🤗 diffusers: DiT ⇄ `DiTTransformer2DModel`, a `DiTPipeline` from a ditlab model, and
sampling a ditlab DiT with any diffusers scheduler.

diffusers' DiT is the same network as the paper's adaLN-Zero DiT (§3.2) with two numerical differences,
both fixed by `make_exact` (and set by `to_diffusers`):
- its timestep embedding uses `downscale_freq_shift=1`: frequencies 10000^(-k/127) instead of DiT's
  10000^(-k/128) (k = 0..127), hard-coded in `CombinedTimestepLabelEmbeddings`;
- the LayerNorm before each MLP uses `norm_eps` (default 1e-5; DiT uses 1e-6 everywhere).
Other layout differences: q/k/v are separate linears (DiT: one qkv), and every block holds its own copy of
the timestep/label embedders (DiT: one shared copy); the positional embedding is recomputed, not stored.
"""
from pathlib import Path

import torch

from ..checkpoint import load_model, load_state_dict_checked
from ..checks import refuse
from ..data.imagenet import imagenet_names
from ..extras import requires
from ..io import hub_reachable
from ..model import DiT, DiTConfig
from .pretrained import load_sd_vae

SCHEDULERS = ("ddim", "ddpm", "dpm-solver")
DIT_BETAS = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


# ---- model conversion ------------------------------------------------------------------------------
def diffusers_config(config: DiTConfig) -> dict:
    """`DiTTransformer2DModel(**kwargs)` for a DiT config; ValueError for what diffusers' DiT cannot express."""
    c, (h, w) = config, config.hw
    modern = {k: getattr(c, k) for k, v in dict(norm="layernorm", mlp="gelu", qk_norm=False, rope=False).items()
              if getattr(c, k) != v}
    refuse("diffusers' DiTTransformer2DModel cannot express this model", [
        (c.block != "adaLN-Zero", f"it only implements block='adaLN-Zero', got block={c.block!r}"),
        (c.pos_embed != "sincos", f"it recomputes a fixed sin-cos positional embedding, got pos_embed={c.pos_embed!r}"),
        (bool(modern), f"it has the paper's block, not the modern block's options {modern}"),
        (c.mlp_ratio != 4.0, f"it has a 4x MLP, got mlp_ratio={c.mlp_ratio}"),
        (h != w, f"it is square (sample_size), got input_size={c.input_size}")])
    return dict(num_attention_heads=c.num_heads, attention_head_dim=c.hidden_size // c.num_heads,
                in_channels=c.in_channels, out_channels=c.out_channels, num_layers=c.depth, sample_size=h,
                patch_size=c.patch_size, num_embeds_ada_norm=c.num_classes, activation_fn="gelu-approximate",
                norm_type="ada_norm_zero", norm_elementwise_affine=False, attention_bias=True,
                norm_eps=1e-6)  # DiT's LayerNorm eps everywhere


def make_exact(transformer):
    """Patch a diffusers DiTTransformer2DModel in place so that it computes exactly the official DiT:
    timestep frequencies /128 (downscale_freq_shift=0) and LayerNorm eps 1e-6. Returns it.

    The eps is also written to its config (kept by save_pretrained); the frequency shift is not a config
    option, so re-apply this after every `from_pretrained` (`load_pipeline` does)."""
    for block in transformer.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
        block.norm3.eps = 1e-6
    transformer.register_to_config(norm_eps=1e-6)
    return transformer


def is_exact(transformer) -> bool:
    """True when `transformer` computes the official DiT (see `make_exact`)."""
    return all(b.norm1.emb.time_proj.downscale_freq_shift == 0 and b.norm3.eps == 1e-6
               for b in transformer.transformer_blocks)


def _embedder_keys(i: int) -> dict:
    e = f"transformer_blocks.{i}.norm1.emb."
    return {"t_embedder.mlp.0": e + "timestep_embedder.linear_1", "t_embedder.mlp.2": e + "timestep_embedder.linear_2",
            "y_embedder.embedding_table": e + "class_embedder.embedding_table"}


def _block_keys(i: int) -> dict:
    """ditlab module name -> diffusers module name inside block i (qkv is handled separately)."""
    b, d = f"blocks.{i}.", f"transformer_blocks.{i}."
    return {b + "attn.proj": d + "attn1.to_out.0", b + "mlp.fc1": d + "ff.net.0.proj", b + "mlp.fc2": d + "ff.net.2",
            b + "adaLN_modulation.1": d + "norm1.linear"}  # both chunk into (shift, scale, gate) x 2


_TOP_KEYS = {"x_embedder.proj": "pos_embed.proj", "final_layer.adaLN_modulation.1": "proj_out_1",
             "final_layer.linear": "proj_out_2"}


def _like(module, p: torch.Tensor):
    """`module` on p's device and dtype (float32 modules are not re-cast), eval mode."""
    module = module.to(p.device)
    return (module if p.dtype == torch.float32 else module.to(p.dtype)).eval()


def to_diffusers(model: DiT, exact: bool = True):
    """A `diffusers.DiTTransformer2DModel` with this DiT's weights, same dtype/device, eval mode.

    exact=True (default) applies `make_exact`, so outputs match the ditlab model to float rounding;
    exact=False gives the stock diffusers behaviour (~3 % off, see the module docstring).
    A model without a null class gets a zero null row (diffusers always has one)."""
    with requires("hf"):
        from diffusers import DiTTransformer2DModel  # heavy optional dependency (the [hf] extra)

    refuse("", [(not isinstance(model, DiT), f"model must be a ditlab DiT, got {type(model).__name__}")], TypeError)
    c = model.config
    kwargs = diffusers_config(c)
    sd = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    out = {}
    for src, dst in _TOP_KEYS.items():
        for p in ("weight", "bias"):
            out[f"{dst}.{p}"] = sd[f"{src}.{p}"]
    table = sd["y_embedder.embedding_table.weight"]  # (num_classes [+ 1], D)
    if not c.has_null_class:
        table = torch.cat([table, torch.zeros_like(table[:1])])
    for i in range(c.depth):
        for src, dst in _embedder_keys(i).items():
            if src.startswith("y_"):
                out[dst + ".weight"] = table
            else:
                out[dst + ".weight"], out[dst + ".bias"] = sd[src + ".weight"], sd[src + ".bias"]
        for src, dst in _block_keys(i).items():
            out[dst + ".weight"], out[dst + ".bias"] = sd[src + ".weight"], sd[src + ".bias"]
        d = f"transformer_blocks.{i}.attn1."
        for name, w, b in zip(("to_q", "to_k", "to_v"), sd[f"blocks.{i}.attn.qkv.weight"].chunk(3),
                              sd[f"blocks.{i}.attn.qkv.bias"].chunk(3)):  # qkv rows are [q; k; v]
            out[d + name + ".weight"], out[d + name + ".bias"] = w, b
    transformer = DiTTransformer2DModel(**kwargs)
    transformer.load_state_dict(out, strict=True)
    refuse("cannot convert", [(not torch.allclose(transformer.pos_embed.pos_embed[0], sd["pos_embed"][0], atol=1e-5),
                                "the stored pos_embed is not the standard 2D sin-cos table diffusers recomputes")])
    if exact:
        make_exact(transformer)
    return _like(transformer, next(model.parameters()))


def _block0(key: str, i: int) -> str:
    return key.replace(f"transformer_blocks.{i}.", "transformer_blocks.0.")


def from_diffusers(transformer, class_dropout_prob: float = 0.1) -> DiT:
    """A ditlab DiT (eval mode) from a `DiTTransformer2DModel` (or `Transformer2DModel` in DiT form).

    The ditlab model always computes the official DiT, i.e. what `make_exact(transformer)` computes; a stock
    diffusers model differs from it by ~3 %. class_dropout_prob=0 drops diffusers' null-class row."""
    cfg = transformer.config
    C = cfg.in_channels
    out_ch = cfg.out_channels or C
    refuse("not a DiT transformer", [
        (getattr(cfg, "norm_type", None) != "ada_norm_zero" or getattr(cfg, "num_embeds_ada_norm", None) is None,
         "only class-conditional adaLN-Zero DiT transformers (norm_type='ada_norm_zero') convert"),
        (cfg.activation_fn != "gelu-approximate" or cfg.norm_elementwise_affine or not cfg.attention_bias,
         "expected activation_fn='gelu-approximate', norm_elementwise_affine=False and attention_bias=True"),
        (out_ch not in (C, 2 * C),
         f"out_channels must be in_channels ({C}) or 2*in_channels (learned Σ), got {out_ch}")])
    D = cfg.num_attention_heads * cfg.attention_head_dim
    config = DiTConfig(input_size=cfg.sample_size, patch_size=cfg.patch_size, in_channels=C, hidden_size=D,
                       depth=cfg.num_layers, num_heads=cfg.num_attention_heads, mlp_ratio=4.0,
                       class_dropout_prob=class_dropout_prob, num_classes=cfg.num_embeds_ada_norm,
                       learn_sigma=out_ch == 2 * C)
    src = {k: v.detach().cpu().float() for k, v in transformer.state_dict().items()}
    differ = sorted({i for i in range(1, cfg.num_layers) for k in _embedder_keys(i).values() for p in ("weight", "bias")
                     if f"{k}.{p}" in src and not torch.equal(src[f"{k}.{p}"], src[f"{_block0(k, i)}.{p}"])})
    refuse("cannot convert", [(differ, f"the timestep/label embedders of blocks {differ} differ from block 0's; "
                                       "a DiT shares one embedder")])  # ditlab shares it: the copies must agree
    sd = {}
    for dst, s in _TOP_KEYS.items():
        for p in ("weight", "bias"):
            sd[f"{dst}.{p}"] = src[f"{s}.{p}"]
    for dst, s in _embedder_keys(0).items():
        sd[dst + ".weight"] = src[s + ".weight"]
        if not dst.startswith("y_"):
            sd[dst + ".bias"] = src[s + ".bias"]
    if class_dropout_prob == 0:
        sd["y_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"][:-1]
    for i in range(cfg.num_layers):
        for dst, s in _block_keys(i).items():
            sd[dst + ".weight"], sd[dst + ".bias"] = src[s + ".weight"], src[s + ".bias"]
        a = f"transformer_blocks.{i}.attn1."
        sd[f"blocks.{i}.attn.qkv.weight"] = torch.cat([src[a + n + ".weight"] for n in ("to_q", "to_k", "to_v")])
        sd[f"blocks.{i}.attn.qkv.bias"] = torch.cat([src[a + n + ".bias"] for n in ("to_q", "to_k", "to_v")])
    model = DiT(config)
    sd["pos_embed"] = model.pos_embed.detach().clone()
    load_state_dict_checked(model, sd)
    return _like(model, next(transformer.parameters()))


# ---- pipeline ----------------------------------------------------------------------------------------
def to_pipeline(model, vae=None, scheduler=None, id2label: dict | None = None):
    """A `diffusers.DiTPipeline` from a ditlab DiT (or checkpoint path), exact (see `make_exact`).

    vae: an AutoencoderKL (default: the SD ft-EMA VAE via `ditlab.hub.pretrained.load_sd_vae`); scheduler: any
    KarrasDiffusionSchedulers instance (default `scheduler_from_name("ddim")`); id2label: class names
    (default: the ImageNet names). DiTPipeline always decodes with a VAE and uses label 1000 as the null
    class, so the model must be a 1000-class latent model; use `sample_with_scheduler` otherwise."""
    with requires("hf"):
        from diffusers import DiTPipeline  # heavy optional dependency (the [hf] extra)

    if not isinstance(model, DiT):
        model = load_model(model)
    c = model.config
    refuse("DiTPipeline cannot sample this model", [
        (c.num_classes != 1000 or not c.has_null_class, f"it needs num_classes=1000 with a null class (label 1000 is "
         f"its unconditional label), got num_classes={c.num_classes}, class_dropout_prob={c.class_dropout_prob}; "
         "sample with ditlab.sample(model, ..., sampler=<diffusers scheduler>, vae=...) instead"),
        (vae is None and c.in_channels != 4, f"this is a pixel-space model (in_channels={c.in_channels}) and "
         "DiTPipeline always decodes with a VAE; sample it with ditlab.sample or sample_with_scheduler instead")])
    vae = load_sd_vae("ema") if vae is None else vae
    scheduler = scheduler_from_name("ddim") if scheduler is None else scheduler
    sigma = float(getattr(scheduler, "init_noise_sigma", 1.0))
    refuse("DiTPipeline cannot use this VAE or scheduler", [
        (getattr(vae.config, "latent_channels", None) != c.in_channels, f"vae.config.latent_channels="
         f"{getattr(vae.config, 'latent_channels', None)} must equal the model's in_channels={c.in_channels}"),
        (getattr(scheduler.config, "variance_type", None) in ("learned", "learned_range"), "it passes only ε to the "
         "scheduler (it drops the learned Σ channels): use a scheduler without a learned variance_type, e.g. "
         "scheduler_from_name('ddpm', variance_type='fixed_small')"),
        (sigma != 1.0, f"it does not scale its initial noise by scheduler.init_noise_sigma ({sigma:.1f} for "
         f"{type(scheduler).__name__}); use one with init_noise_sigma=1 (DDIM, DDPM, DPM-Solver, UniPC, ...) or "
         "sample_with_scheduler")])
    if id2label is None:
        id2label = {i: ", ".join(n) for i, n in enumerate(imagenet_names())}
    id2label = {int(k): v for k, v in id2label.items()}
    pipe = DiTPipeline(transformer=to_diffusers(model), vae=vae, scheduler=scheduler, id2label=id2label)
    pipe.register_to_config(id2label=id2label)  # saved in model_index.json, read back by from_pretrained
    return pipe


def load_pipeline(path, exact: bool = True, **kwargs):
    """`DiTPipeline.from_pretrained(path, **kwargs)`, then `make_exact` on its transformer (unless exact=False).
    Offline, only local folders and the local Hugging Face cache are tried (no slow retries)."""
    with requires("hf"):
        from diffusers import DiTPipeline  # heavy optional dependency (the [hf] extra)

    reason = None if Path(path).expanduser().is_dir() else hub_reachable()
    try:
        pipe = DiTPipeline.from_pretrained(str(path), local_files_only=reason is not None, **kwargs)
    except (OSError, ValueError) as e:
        if reason is None:
            raise
        raise ConnectionError(f"cannot load the pipeline {str(path)!r} ({reason}); download it where there is "
                              f"internet (`huggingface-cli download {path} --local-dir <folder>`) and pass "
                              "the folder") from e
    if exact:
        make_exact(pipe.transformer)
    return pipe


# ---- diffusers schedulers ------------------------------------------------------------------------------
def scheduler_from_name(name: str, **overrides):
    """A diffusers scheduler with DiT's schedule (linear β 1e-4 → 0.02, T = 1000, ε-prediction), set so that
    it reproduces ditlab's samplers: "ddim" = `create_diffusion("ddimN")` (timestep_spacing="leading",
    steps_offset=0, set_alpha_to_one=True), "ddpm" = `create_diffusion("N")` with learned Σ
    (timestep_spacing="linspace", variance_type="learned_range"); "dpm-solver" = DPM-Solver++(2M)."""
    with requires("hf"):
        from diffusers import (  # heavy optional dependency (the [hf] extra)
            DDIMScheduler,
            DDPMScheduler,
            DPMSolverMultistepScheduler,
        )

    if name == "ddim":
        cls, kw = DDIMScheduler, dict(clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                      timestep_spacing="leading")
    elif name == "ddpm":
        cls, kw = DDPMScheduler, dict(clip_sample=False, variance_type="learned_range", timestep_spacing="linspace")
    elif name == "dpm-solver":
        cls, kw = DPMSolverMultistepScheduler, dict(algorithm_type="dpmsolver++", solver_order=2)
    else:
        raise ValueError(f"name must be one of {list(SCHEDULERS)}, got {name!r}")
    return cls(**{**DIT_BETAS, "prediction_type": "epsilon", **kw, **overrides})
