"""Measuring a DiT: its Gflops in the paper's convention, the paper's Table 4 beside them, and the quality of
its samples.

    flops.py    Gflops (fvcore over a real forward pass, and a closed form) and parameter counts (§4)
    table4.py   the paper's Table 4 as typed rows, `ditlab flops`'s comparison, Fig. 8 drawn from it
    judge.py    a small classifier trained on the real data: the offline stand-in for Inception-V3
    judge_nets.py  its bodies and recipes: a small CNN for grayscale, a small ResNet for RGB (CIFAR-10)
    metrics.py  conditional accuracy, Fréchet distance, Inception FID (extra), ADM .npz samples
    verdict.py  the end of a training run: guided and unguided samples judged against the range the data allows,
                "good" only from a judge that is itself good
"""
from .flops import FLOPS_PARTS, count_flops, count_params, estimate_flops, estimate_params, flops_breakdown
from .judge import Judge, get_judge, load_judge, train_judge
from .metrics import (conditional_accuracy, evaluate, feature_stats, frechet_distance, inception_fid, judge_fd,
                      load_npz_samples, save_npz_samples)
from .table4 import draw_fig8, flops_table, format_table, gflops_text, paper_table

__all__ = ["FLOPS_PARTS", "Judge", "conditional_accuracy", "count_flops", "count_params", "draw_fig8", "estimate_flops",
           "estimate_params", "evaluate", "feature_stats", "flops_breakdown", "flops_table", "format_table", "frechet_distance",
           "get_judge", "gflops_text", "inception_fid", "judge_fd", "load_judge", "load_npz_samples", "paper_table",
           "save_npz_samples", "train_judge"]
