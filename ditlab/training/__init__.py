"""Training a DiT (paper §4): the loop and what it keeps.

    config.py    TrainConfig (every `ditlab train` flag) and the model config sized to the data
    hardware.py  device, precision (bf16 / fp16 + grad scaler / fp32; bf16 on CPUs where it pays) and DDP processes
    recipes.py   recipes by scale: the hyper-parameters of the options a run leaves unset (quick / paper)
    ema.py       the EMA of the weights that samples are drawn from
    state.py     the resumable state (weights, EMA, optimizer, RNG) in one atomic safetensors file
    rundir.py    the run folder: a lock, no silent clobbering (resume / overwrite), orphaned temp files removed
    resume.py    what a resumed run may change: applied and reported, or refused
    log.py       log.csv, one row per logged step
    loop.py      train(): the loop itself
    verdict.py   the end of a run: a guided sample grid judged against the expected range, with a hint
"""
from .config import OBJECTIVES, PRECISIONS, TrainConfig, build_model_config, build_objective, describe_objective
from .hardware import explain_precision, resolve_precision
from .recipes import resolve_recipe
from .log import read_log
from .loop import train

__all__ = ["OBJECTIVES", "PRECISIONS", "TrainConfig", "build_model_config", "build_objective", "describe_objective",
           "explain_precision", "read_log", "resolve_precision", "resolve_recipe", "train"]
