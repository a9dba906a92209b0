"""Training a DiT (paper §4): the loop and what it keeps.

    config.py    TrainConfig (every `ditlab train` flag) and the model config sized to the data
    hardware.py  device, precision (bf16 / fp16 + grad scaler / fp32; bf16 on CPUs where it pays) and DDP processes
    recipes.py   recipes by scale: the hyper-parameters of the options a run leaves unset (quick / paper)
    ema.py       the EMA of the weights that samples are drawn from
    resume.py    resuming, in one place: the resumable state (weights, EMA, optimizer, RNG) in one atomic
                 safetensors file, what a resumed run keeps, and what it may change (applied and reported, or refused)
    rundir.py    the run folder: a lock, no silent clobbering (resume / overwrite), orphaned temp files removed
    interrupt.py Ctrl-C: finish the step, save it, stop
    advice.py    messages speak the caller's language: flags on the command line, keywords in Python
    log.py       what a run writes about itself: the header line, log.csv, config.json, metrics.json
    loop.py      train(): data -> noise -> loss -> step -> EMA -> log -> checkpoint, top to bottom
    vae.py       train_vae(): a small KL autoencoder for latent diffusion (`ditlab vae`; paper §3.1)

The verdict that ends a run (a judged sample grid) is evaluation: ditlab/eval/verdict.py.
"""
from .config import OBJECTIVES, PRECISIONS, TrainConfig, build_model_config, build_objective, describe_objective
from .hardware import explain_precision, resolve_precision
from .recipes import resolve_recipe
from .log import read_log
from .loop import train
from .vae import VAEConfig, export_vae, psnr, train_vae

__all__ = ["OBJECTIVES", "PRECISIONS", "TrainConfig", "VAEConfig", "build_model_config", "build_objective",
           "describe_objective", "explain_precision", "export_vae", "psnr", "read_log", "resolve_precision",
           "resolve_recipe", "train", "train_vae"]
