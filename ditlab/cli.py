"""The `ditlab` command line.

  ditlab demo                      train a small DiT on the built-in digits, sample, judge (minutes on a CPU)
  ditlab train --data digits ...   train (multi-GPU: torchrun --nproc_per_node N -m ditlab train ...)
  ditlab sample --ckpt NAME ...    class-conditional sample grid: a shipped name (digits-p4), a run folder, a file
  ditlab vae --data digits ...     train a small KL autoencoder; then ditlab train --vae RUN (latent diffusion, §3.1)
  ditlab list                      the checkpoints --ckpt takes: shipped names, runs in this folder, released names
  ditlab flops                     params and Gflops of the paper's configs next to Table 4 (--rmsnorm, --rope, ...)
  ditlab scaling                   the scaling study in miniature: model size x patch size -> quality vs Gflops
  ditlab playground                the sampling playground and scaling explorer as a web app (Voilà, the `app` extra)
  ditlab objectives                after DiT: DDPM vs rectified flow vs logit-normal t vs the modern block, vs NFE
"""
import argparse
import functools
import json
import os
import re
import sys
import textwrap
from dataclasses import MISSING, fields, replace
from pathlib import Path

from .checkpoint import RELEASED, load_model, local_runs, release_cache_dir
from .cli_help import TRAIN_NONE, Formatter, document, field_comments, none_means
from .data import decode_latents, load_vae
from .demo import run_demo
from .playground import serve
from .eval import flops_table, format_table
from .io import check_output_file, resolve_device, save_tensors
from .checks import integer
from .io.images import check_image_file, grid_shape
from .sampling import MAX_IMAGES, SAMPLERS, Guidance, Sampler, check_settings, sample
from .studies.objectives import markdown_table, run_objectives
from .studies.scaling import run_scaling, summarize
from .training import TrainConfig, train
from .training.advice import command_line
from .training.config import RECIPE_FIELDS, RECIPE_NAMES
from .training.vae import VAEConfig, train_vae
from .zoo import card, checkpoint_dir, list_pretrained


# refusals whose message says it all; any other exception is shown with its type
ERRORS = (ValueError, TypeError, OSError, FloatingPointError, MemoryError, ImportError)
MODERN_FLAGS = dict(rmsnorm=("norm", "rmsnorm"), swiglu=("mlp", "swiglu"), qk_norm=("qk_norm", True),
                    rope=("rope", True))


def cmd_flops(args) -> None:
    modern = dict(v for k, v in MODERN_FLAGS.items() if getattr(args, k))
    print(format_table(flops_table(method=args.method, **modern)))
    print("\nGflops: one forward pass of one image, multiply-add = 1 flop, VAE excluded (paper §4, Table 4).")
    if modern:
        print(f"With the modern block's options {modern}: the paper's columns are for its own block.")


def _add_train_args(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--batch-size, --lr, ...), its help from the field's comment and its default
    shown; unset flags keep the config's defaults (None: the recipe's, see ditlab.training.recipes, or the data's)."""
    comments = field_comments()
    for f in fields(TrainConfig):
        flag, typ = "--" + f.name.replace("_", "-"), str(f.type)
        default = "the recipe's" if f.name in RECIPE_FIELDS else TRAIN_NONE.get(f.name, f.default) \
            if f.default is not MISSING else "{}"
        text = re.sub(r";? ?None: the recipe's|\(default: [^)]*\)|default \w+", "", comments.get(f.name, "")).strip()
        text = f"{text.rstrip(';,')} (default: {default})".strip().replace("%", "%%")
        if f.name == "recipe":
            p.add_argument(flag, choices=RECIPE_NAMES, help="hyper-parameters for the options not given: quick (short "
                           "CPU runs), paper (the paper's, for long runs); auto picks by model and steps (default: "
                           "auto)")
        elif f.name == "model_args":
            p.add_argument(flag, type=json.loads, help='DiTConfig overrides as JSON, e.g. \'{"depth": 4}\' (default: '
                           'none)')
        elif f.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        else:
            kind = float if "float" in typ else int if "int" in typ else str
            p.add_argument(flag, type=kind, help=text)


def _train_kwargs(args) -> dict:
    return {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name, None) is not None}


def cmd_train(args) -> None:
    with command_line("ditlab train"):  # advice in messages as flags of this command
        result = train(**_train_kwargs(args))
    out = result["out_dir"]
    print(f"EMA weights: {out / 'ema.safetensors'}   config: {out / 'config.json'}   metrics: {out / 'metrics.json'}")


def cmd_sample(args) -> None:
    # everything that can be checked is, before the model is loaded and sampled
    interval = tuple(float(v) for v in args.cfg_interval.split(",")) if args.cfg_interval else None
    sampler, guidance = check_settings(Sampler(args.sampler, args.eta, args.time_shift, args.diffusion_form),
                                       Guidance(args.cfg_scale, args.guidance_channels, interval), args.steps, args.seed)
    if args.nrow is not None:
        integer("--nrow", args.nrow, min=1)
    integer("--per-class", args.per_class, min=1, max=MAX_IMAGES)
    check_image_file(args.out, "--out", args.overwrite)
    if args.tensors and Path(args.tensors).exists() and not args.overwrite:
        raise FileExistsError(f"--tensors {args.tensors!r} exists: pass --overwrite to replace it")
    if args.tensors:
        check_output_file(args.tensors, "--tensors")
    resolve_device(args.device or "cpu")
    labels = [s.strip() for s in args.labels.split(",")] if args.labels else None
    model = load_model(args.ckpt, device=args.device or "cpu")
    vae = load_vae(model.vae, device=args.device or "cpu") if model.vae else None  # a latent model's decoder
    labels = labels or [i for i in range(model.config.num_classes) for _ in range(args.per_class)]
    integer("the number of images (--labels, or --per-class × classes)", len(labels), max=MAX_IMAGES)
    grid_shape(len(labels), model.config.hw, args.nrow)
    out = sample(model, labels, steps=args.steps, sampler=sampler, cfg_scale=guidance, seed=args.seed,
                 device=args.device)
    out = replace(out, images=decode_latents(out.images, vae).cpu(), latents=out.images) if vae else out
    path = out.save(args.out, nrow=args.nrow, overwrite=args.overwrite)
    if args.tensors:
        save_tensors(args.tensors, {"images": out.images, "labels": out.labels})
    print(f"wrote {path} ({len(out.labels)} images)")


def cmd_vae(args) -> None:
    with command_line("ditlab vae"):  # advice in messages as flags of this command
        train_vae(**{f.name: getattr(args, f.name) for f in fields(VAEConfig)})


def cmd_demo(args) -> None:
    with command_line("ditlab demo"):  # advice in messages as flags of this command (--resume, --steps, ...)
        run_demo(out_dir=args.out_dir, smoke=args.smoke, steps=args.steps, overwrite=args.overwrite,
                 resume=args.resume)


def cmd_scaling(args) -> None:
    kw = dict(sizes=args.sizes.split(","), patches=[int(p) for p in args.patches.split(",")], data=args.data,
              image_size=args.image_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
              samples_per_class=args.samples_per_class, cfg_scale=args.cfg_scale, out_dir=args.out_dir,
              reuse=not args.retrain, objective=args.objective)
    if args.smoke:
        kw.update(steps=3, samples_per_class=1, judge_kwargs=dict(smoke=True))
    with command_line("ditlab scaling"):
        rows = run_scaling(**kw)
    for r in rows:
        print(f"{r['model']:<12} tokens {r['tokens']:>4}  Gflops {r['gflops']:.4f}  FD {r['fd']:.2f}  acc {r['accuracy']:.2f}")
    print(summarize(rows))
    print(f"wrote {args.out_dir}/scaling.csv and scaling.png")


def cmd_objectives(args) -> None:
    kw = dict(runs=args.runs.split(","), model=args.model, data=args.data, image_size=args.image_size, steps=args.steps,
              batch_size=args.batch_size, lr=args.lr, nfes=[int(n) for n in args.nfes.split(",")],
              samples_per_class=args.samples_per_class, cfg_scales=[float(s) for s in args.cfg_scales.split(",")],
              out_dir=args.out_dir,
              reuse=not args.retrain)
    if args.smoke:
        kw.update(steps=3, nfes=[2, 4], samples_per_class=1, model_args={"depth": 1}, judge_kwargs=dict(smoke=True))
    with command_line("ditlab objectives"):
        rows = run_objectives(**kw)
    print(markdown_table(rows))
    print(f"wrote {args.out_dir}/objectives.csv, objectives.png and objectives_grids.png")


def cmd_list(args) -> None:
    """What `--ckpt` (and `ditlab.load_model`) take: shipped names, runs below this folder, released names."""
    print(f"shipped checkpoints ({checkpoint_dir()}): ditlab sample --ckpt NAME")
    for name, c in ((name, card(name)) for name in list_pretrained()):
        print(f"  {name:<16} {c.get('data')} {c.get('image_size')} px, {c.get('model')}, "
              f"{c.get('objective', {}).get('objective', 'ddpm')}, accuracy {c.get('eval', {}).get('accuracy')}")
    runs = local_runs()
    print(f"runs in {os.getcwd()}: ditlab sample --ckpt RUN"
          + ("" if runs else "\n  none (ditlab demo writes runs/demo)"))
    for run in runs:
        print(f"  {run}")
    print(f"released (downloaded once into {release_cache_dir()}, 2.7 GB each): ditlab sample --ckpt NAME")
    for name in RELEASED:
        print(f"  {name:<16} {'cached' if (release_cache_dir() / f'{name}.pt').exists() else 'not downloaded yet'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ditlab", description=__doc__, formatter_class=Formatter)
    sub = p.add_subparsers(dest="command", required=True,
                           parser_class=functools.partial(argparse.ArgumentParser, formatter_class=Formatter))
    f = sub.add_parser("flops", help="params and Gflops of the paper's configs next to Table 4")
    f.add_argument("--method", choices=["estimate", "fvcore"], default="estimate",
                   help="closed form (instant) or fvcore over a real forward pass (slower)")
    for flag, (field, value) in MODERN_FLAGS.items():
        f.add_argument("--" + flag.replace("_", "-"), action="store_true", help=f"count the modern block: {field}={value}")
    f.set_defaults(func=cmd_flops)

    t = sub.add_parser("train", help="train a DiT (see ditlab.training.TrainConfig for every option)")
    _add_train_args(t)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="sample a class-conditional image grid", epilog=textwrap.fill(
        f"--ckpt takes a shipped name ({', '.join(list_pretrained()) or 'none found'}), a run folder, a .safetensors "
        f"/ .pt file or a released name ({', '.join(RELEASED)}); `ditlab list` shows them all.", 100))
    s.add_argument("--ckpt", required=True, help="ditlab run folder / .safetensors, or an official DiT .pt")
    s.add_argument("--labels", default=None, help="comma-separated class ids or names (default: every class)")
    s.add_argument("--per-class", type=int, default=8, help="images per class when --labels is not given "
                   f"(at most {MAX_IMAGES} images in all)")
    s.add_argument("--steps", type=int, default=50, help="1..1000")
    s.add_argument("--sampler", default=None, choices=list(SAMPLERS),
                   help="default: ddim for DDPM checkpoints, euler for flow-matching ones (the checkpoint says which)")
    s.add_argument("--cfg-scale", type=float, default=4.0, help="classifier-free guidance, 0..100 (1 = none)")
    s.add_argument("--guidance-channels", type=int, default=None, help="3 = official DiT guidance")
    s.add_argument("--eta", type=float, default=0.0, help="DDIM noise, 0..1 (ddim only)")
    s.add_argument("--time-shift", type=float, default=1.0, help="flow samplers: SD3's time shift, 0.01..100 (1 = none)")
    s.add_argument("--cfg-interval", default=None, help="flow samplers: guidance only for t in 'LO,HI' (0 noise, 1 data)")
    s.add_argument("--diffusion-form", default="sigma", help="sde-euler / sde-heun: SiT's diffusion coefficient w_t")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default=None)
    s.add_argument("--nrow", type=int, default=None)
    s.add_argument("--out", default="samples.png", help="the grid: .png, .jpg or .jpeg")
    s.add_argument("--overwrite", action="store_true", help="replace an --out or --tensors file that is not an image")
    s.add_argument("--tensors", default=None, help="also save images/labels to this .safetensors")
    s.set_defaults(func=cmd_sample)
    none_means(s, device="cpu", nrow="a square grid", guidance_channels="every channel", cfg_interval="every t",
                tensors="not written")

    v = sub.add_parser("vae", help="train a small KL autoencoder (diffusers AutoencoderKL) for latent diffusion")
    for f in fields(VAEConfig):
        typ = str(f.type)
        kind = dict(action=argparse.BooleanOptionalAction) if f.type is bool else \
            dict(type=float if "float" in typ else int if "int" in typ else str)
        v.add_argument("--" + f.name.replace("_", "-"), default=f.default, help=f.metadata["help"], **kind)
    v.set_defaults(func=cmd_vae)

    c = sub.add_parser("scaling", help="the paper's scaling study in miniature: sizes x patch sizes -> FD vs Gflops")
    c.add_argument("--sizes", default="Pico,Nano,Mi")
    c.add_argument("--patches", default="2,4,8")
    c.add_argument("--data", default="digits")
    c.add_argument("--image-size", type=int, default=16)
    c.add_argument("--steps", type=int, default=4000)
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--lr", type=float, default=2e-3)
    c.add_argument("--samples-per-class", type=int, default=50)
    c.add_argument("--cfg-scale", type=float, default=1.0, help="guidance when judging (1 = none, as Table 4)")
    c.add_argument("--objective", choices=("ddpm", "flow"), default="ddpm",
                   help="the paper's DDPM, or flow matching (learns faster: notebook 10's short study)")
    c.add_argument("--out-dir", default="runs/scaling")
    c.add_argument("--retrain", action="store_true", help="retrain runs already in --out-dir (default: reuse them)")
    c.add_argument("--smoke", action="store_true", help="3 steps per run: checks the pipeline, not the trend")
    c.set_defaults(func=cmd_scaling)

    o = sub.add_parser("objectives", help="DDPM vs flow matching vs logit-normal t vs the modern block, against NFE")
    o.add_argument("--runs", default="a,b,c,d", help="a: DDPM ε + learned Σ, b: rectified flow, c: b + logit-normal t, "
                   "d: c + modern block")
    o.add_argument("--model", default="DiT-Nano/2")
    o.add_argument("--data", default="digits")
    o.add_argument("--image-size", type=int, default=16)
    o.add_argument("--steps", type=int, default=3000)
    o.add_argument("--batch-size", type=int, default=64)
    o.add_argument("--lr", type=float, default=2e-3)
    o.add_argument("--nfes", default="4,8,16,32,64", help="function evaluations to judge each run at")
    o.add_argument("--samples-per-class", type=int, default=50)
    o.add_argument("--cfg-scales", default="1,4", help="guidance scales to judge at: unguided FD, guided accuracy")
    o.add_argument("--out-dir", default="runs/objectives")
    o.add_argument("--retrain", action="store_true", help="retrain runs already in --out-dir (default: reuse them)")
    o.add_argument("--smoke", action="store_true", help="3 steps per run: checks the pipeline, not the result")
    o.set_defaults(func=cmd_objectives)

    d = sub.add_parser("demo", help="train a small DiT on the built-in digits, sample and judge it")
    d.add_argument("--out-dir", default="runs/demo")
    d.add_argument("--steps", type=int, default=None, help="override the number of training steps")
    d.add_argument("--smoke", action="store_true", help="a tiny run that checks the pipeline in seconds")
    d.add_argument("--overwrite", action="store_true", help="replace an earlier demo in --out-dir (else refused)")
    d.add_argument("--resume", action="store_true", help="continue the demo in --out-dir from its checkpoint "
                   "(with --steps N: train on to step N), then judge it again")
    d.set_defaults(func=cmd_demo)

    g = sub.add_parser("playground", help="the sampling playground and scaling explorer as a web app (Voilà, "
                                          "pip install -e \".[app]\")")
    g.add_argument("--model", default=None, help="the checkpoint the playground starts with (default digits-p4)")
    g.add_argument("--port", type=int, default=8866, help="port on --host (0: any free port)")
    g.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    g.add_argument("--n", type=int, default=20, help="images per grid")
    g.add_argument("--steps", type=int, default=25, help="sampling steps")
    g.set_defaults(func=cmd_playground)

    ls = sub.add_parser("list", help="the checkpoints --ckpt takes: shipped names, runs here, released names")
    ls.set_defaults(func=cmd_list)
    document(p)
    return p


def _negative_values(argv: list[str]) -> list[str]:
    """`--lr -1e-3` -> `--lr=-1e-3`: argparse takes "-1e-3" for an option (it knows only "-1" and "-.5" as numbers)."""
    out = []
    for tok in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and tok.startswith("-") and _is_number(tok):
            out[-1] = f"{out[-1]}={tok}"
        else:
            out.append(tok)
    return out


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def cmd_playground(args) -> None:
    serve(model=args.model, port=args.port, host=args.host, n=args.n, steps=args.steps)


def main(argv=None) -> None:
    """Every refusal exits non-zero with one `ditlab <command>: error: ...` message and no traceback (set
    DITLAB_DEBUG=1 for one); Ctrl-C exits 130."""
    args = build_parser().parse_args(_negative_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        args.func(args)
    except KeyboardInterrupt:
        print(f"\nditlab {args.command}: interrupted (Ctrl-C)"
              + ("; the run keeps its last checkpoint: continue it with --resume" if args.command == "train" else ""),
              file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - ValueError, OSError, a missing extra, torch's RuntimeErrors, ...
        if os.environ.get("DITLAB_DEBUG"):
            raise
        text = str(e).strip() or type(e).__name__
        sys.exit(f"ditlab {args.command}: error: {text if isinstance(e, ERRORS) else f'{type(e).__name__}: {text}'}")


if __name__ == "__main__":
    main(sys.argv[1:])
