"""The GPU speed benchmark (benchmarks/gpu_speed.py) and the numerics of the fast path it times.

CPU: bf16 autocast matches fp32 on outputs (rel. error ≤ 1e-2) and gradients (≤ 2e-2) with every weight random
(the paper init zeroes adaLN-Zero and the final layer), diffusers' peer too; bf16 and fp16 + GradScaler training
loss curves overlap fp32's over 30 steps; regional compilation traces one graph for all blocks; the --smoke run's
JSON has the promised structure and MFU follows from the measured rates. GPU (-m gpu): the same on CUDA, compiled.
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from datetime import datetime

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT
from safetensors import safe_open

from ditlab.eval import estimate_flops
from ditlab.model import DiT, get_config

_spec = importlib.util.spec_from_file_location("gpu_speed", ROOT / "benchmarks" / "gpu_speed.py")
gs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gs)

CPU = torch.device("cpu")
SMOKE_CONFIG = get_config("DiT-S/2", **gs.SMOKE)  # S/2 widths, depth 2, 8×8×4 input, 1000 classes


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float32."""
    a, b = a.float(), b.float()
    return ((a - b).norm() / b.norm()).item()


def randomized(config, seed=0) -> DiT:
    """Every weight random, ~1/√fan_in (adaLN-Zero modulations and the final layer included), biases N(0, 0.1)."""
    model = DiT(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            std = 1 / math.sqrt(p[0].numel()) if p.ndim > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def bases_for(config):
    from ditlab.hub.interop import to_diffusers

    model = randomized(config)
    return {"ditlab": model, "diffusers": to_diffusers(model)}


def batch(config, device=CPU):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, config.in_channels, *config.hw, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    y = torch.tensor([0, 7, config.num_classes - 1, config.num_classes])  # the last one is the null label
    return x.to(device), t.to(device), y.to(device)


def forward(impl, bases, x, t, y, device=CPU, how="regional", backend="inductor"):
    """Output of `impl` exactly as the benchmark builds and runs it (eval, no_grad, its autocast)."""
    _, fn, _ = gs.build(impl, bases, device, how, backend)
    with torch.no_grad(), gs.autocast(gs.IMPLS[impl][1], device):
        return fn(x, t, y).float()


# ---- numerics of the fast path (CPU) -----------------------------------------------------------------
def test_bf16_fast_path_and_diffusers_peer_match_fp32_outputs():
    config = get_config("DiT-S/2", depth=4, input_size=8)
    bases = bases_for(config)
    x, t, y = batch(config)
    ref = forward("ditlab-fp32", bases, x, t, y)
    assert ref.std() > 0.5  # all blocks and the final layer contribute (random adaLN-Zero weights)
    with torch.no_grad():  # the peer has the same weights: in fp32 it computes the same function
        assert rel_err(bases["diffusers"](x, t, y).sample, ref) <= 1e-5
    for impl in ("ditlab-bf16", "diffusers-bf16"):
        err = rel_err(forward(impl, bases, x, t, y), ref)
        assert 1e-4 < err <= 1e-2, (impl, err)  # > 1e-4: bf16 really ran; ≤ 1e-2: within bf16 tolerance
    assert rel_err(forward("diffusers-bf16", bases, x, t, y), forward("ditlab-bf16", bases, x, t, y)) <= 1e-2


def _mapped_grads(module) -> torch.Tensor:
    """Gradients of the block weights that map one to one between ditlab and diffusers (MLP, adaLN)."""
    if isinstance(module, DiT):
        names = [(b.mlp.fc1, b.mlp.fc2, b.adaLN_modulation[1]) for b in module.blocks]
    else:
        names = [(b.ff.net[0].proj, b.ff.net[2], b.norm1.linear) for b in module.transformer_blocks]
    return torch.cat([m.weight.grad.flatten() for layers in names for m in layers])


def test_bf16_gradients_match_fp32():
    config = get_config("DiT-S/2", depth=2, input_size=8)
    bases = bases_for(config)
    x, t, y = batch(config)
    target = torch.randn(4, config.out_channels, *config.hw, generator=torch.Generator().manual_seed(2))
    grads = {}
    for impl in ("ditlab-fp32", "ditlab-bf16", "diffusers-bf16"):
        module, fn, _ = gs.build(impl, bases, CPU)
        module.eval()  # no label dropout: the same function for every impl
        with gs.autocast(gs.IMPLS[impl][1], CPU):
            out = fn(x, t, y)
        F.mse_loss(out.float(), target).backward()
        grads[impl] = _mapped_grads(module)
    ref = grads["ditlab-fp32"]
    assert ref.norm() > 0
    for impl in ("ditlab-bf16", "diffusers-bf16"):
        assert 1e-4 < rel_err(grads[impl], ref) <= 2e-2, impl


@pytest.fixture(scope="module")
def digits():
    from ditlab.data import load_dataset

    return load_dataset("digits", limit=256)


def _losses_and_scaler(tmp_path, digits, precision, steps=30):
    from ditlab.training import train

    run = train(model="DiT-Mi/4", model_args={"depth": 2, "hidden_size": 64, "num_heads": 2}, objective="ddpm",
                dataset=digits, batch_size=16, lr=3e-3, steps=steps, ckpt_every=steps, log_every=1, sample_every=0, progress=False,
                warmup_steps=0, verdict=False, precision=precision, out_dir=str(tmp_path / precision))
    with safe_open(str(tmp_path / precision / "checkpoint.safetensors"), framework="pt") as f:
        scaler = json.loads(f.metadata()["scaler"])
    return np.array([r["loss"] for r in run["log"]]), scaler


def test_mixed_precision_loss_curves_overlap_fp32_over_30_steps(tmp_path, digits):
    """Same seed, data, noise and timesteps: bf16 autocast and fp16 autocast + GradScaler track fp32 step by
    step while the loss falls from ~1 to ~0.15 (tolerance: every step within 5 %, on average within 1 %)."""
    ref, scaler = _losses_and_scaler(tmp_path, digits, "fp32")
    assert scaler == {} and ref[-5:].mean() < 0.4 * ref[:3].mean()  # it learns: the curves carry information
    for precision in ("bf16", "fp16"):
        loss, scaler = _losses_and_scaler(tmp_path, digits, precision)
        diff = np.abs(loss - ref) / ref
        assert len(loss) == len(ref) and diff.max() <= 0.05 and diff.mean() <= 0.01, (precision, diff.max(), diff.mean())
        assert not np.array_equal(loss, ref)  # the low precision really ran
        if precision == "fp16":  # the GradScaler path ran and no step was skipped for inf/nan gradients
            assert scaler["scale"] == 65536.0 and scaler["_growth_tracker"] == len(ref)
        else:
            assert scaler == {}  # bf16 needs no loss scaling


# ---- the benchmark script -----------------------------------------------------------------------------
def test_regional_compile_traces_one_graph_for_all_identical_blocks():
    """Why the default run fits its time budget: compiling one block's graph serves every block."""
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    config = get_config("DiT-S/2", depth=3, input_size=8)
    bases = bases_for(config)
    x, t, y = batch(config)
    torch.compiler.reset()
    for lib, per_pass in (("ditlab", 1), ("diffusers", 2)):  # diffusers: block 0 sees a non-contiguous input
        graphs.clear()
        module, fn, settings = gs.build(f"{lib}-bf16-compile", bases, CPU, "regional", counting_backend)
        assert "torch.compile(regional" in settings
        fn(x, t, y).float().sum().backward()
        assert len(graphs) == per_pass, lib
        with torch.no_grad():  # a new grad mode compiles once more, still not once per block
            fn(x, t, y)
        assert len(graphs) == 2 * per_pass, lib
    torch.compiler.reset()
    full = gs.compile_module(DiT(config), "full", counting_backend)
    assert isinstance(full, torch._dynamo.eval_frame.OptimizedModule)


def test_paper_gflops_and_mfu_formula():
    for name, gflops in (("DiT-S/2", 6.06), ("DiT-B/2", 23.01), ("DiT-XL/2", 118.64)):
        assert gs.gflops_for(name, get_config(name)) == (gflops, "paper")
    assert gs.gflops_for("DiT-S/2", SMOKE_CONFIG) == (estimate_flops(SMOKE_CONFIG) / 1e9, "estimate")
    # 400 training images/s of DiT-XL/2 on a 800 TFLOPS GPU: 400 × 3 × 2 × 118.64e9 / 800e12 = 35.6 %
    assert gs.mfu(400, "train", 118.64, 800) == pytest.approx(0.35592)
    assert gs.mfu(400, "sample", 118.64, 800) == pytest.approx(0.35592 / 3)


def _check_result(result: dict, device_type: str):
    assert result["smoke"] is True and result["torch"] == torch.__version__
    datetime.fromisoformat(result["date"])
    assert result["matmul_tflops"] > 0 and result["matmul_n"] == 256
    rows = result["rows"]
    assert {(r["impl"], r["mode"]) for r in rows} == {(i, m) for i in gs.DEFAULT_IMPLS for m in gs.MODES}
    gflops = estimate_flops(SMOKE_CONFIG) / 1e9
    for r in rows:
        assert r["model"] == "DiT-S/2 (depth 2)" and r["latent"] == "8x8x4" and r["batch"] == 2 and r["note"] == ""
        assert r["gflops"] == pytest.approx(gflops) and r["gflops_source"] == "estimate"
        assert r["images_per_s"] > 0 and r["step_ms"] == pytest.approx(1e3 * r["batch"] / r["images_per_s"])
        factor = 3 if r["mode"] == "train" else 1  # MFU from the measured rates, by the documented formula
        expected = r["images_per_s"] * factor * 2 * r["gflops"] * 1e9 / (result["matmul_tflops"] * 1e12)
        assert r["mfu"] == pytest.approx(expected, rel=1e-12)
        assert (r["peak_gb"] is None) == (device_type == "cpu") and (device_type == "cpu" or r["peak_gb"] > 0)
        lib, precision, compiled = gs.IMPLS[r["impl"]]
        assert ("bf16 autocast" in r["settings"]) == (precision == "bf16")
        assert ("TF32 off" in r["settings"]) == (precision == "fp32")
        backend = "aot_eager" if device_type == "cpu" else "inductor"
        assert r["settings"].endswith(f"torch.compile(regional, {backend})" if compiled else "eager")


def test_smoke_run_writes_json_and_a_markdown_table(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_speed.py"), "--smoke", "--device", "cpu",
                           "--out", str(out)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    _check_result(result, "cpu")
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert table[0] == "| impl | model | mode | batch | images/s | MFU | peak GB | settings |"
    assert len(table) == 1 + len(result["rows"])


def test_time_budget_skips_cases_and_bad_arguments_fail_before_work(tmp_path, capsys):
    result = gs.main(["--smoke", "--device", "cpu", "--impls", "ditlab-bf16", "--time-budget", "0",
                      "--out", str(tmp_path / "r.json")])
    assert [r["note"] for r in result["rows"]] == ["skipped: time budget"] * 2
    assert all(r["images_per_s"] is None and r["mfu"] is None for r in result["rows"])
    assert ("| ditlab-bf16 | DiT-S/2 (depth 2) | train | 2 | skipped: time budget | – | – | bf16 autocast, fp32 weights; "
            "eager |") in capsys.readouterr().out
    bad = [(["--models", "DiT-Q/2"], "--models: unknown config"), (["--impls", "nope"], "--impls"),
           (["--batch-sizes", "0"], "--batch-sizes must be positive"), (["--warmup", "0"], "--warmup must be >= 1")]
    if not torch.cuda.is_available():
        bad.append((["--device", "cuda"], "CUDA is not available"))
    for argv, match in bad:
        with pytest.raises(SystemExit):
            gs.parse_args(argv)
        assert match in capsys.readouterr().err


# ---- on a GPU (pytest -m gpu) ---------------------------------------------------------------------------
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_cuda_fast_path_eager_and_compiled_matches_fp32():
    """Full-size DiT-S/2 (32×32×4, random weights): bf16 eager and Inductor-compiled, ditlab and diffusers."""
    config = get_config("DiT-S/2")
    bases = bases_for(config)
    dev = torch.device("cuda")
    x, t, y = batch(config, dev)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # the reference in true fp32 (TF32 off)
    try:
        ref = forward("ditlab-fp32", bases, x, t, y, dev)
    finally:
        torch.set_float32_matmul_precision(before)
    for impl in ("ditlab-bf16", "ditlab-bf16-compile", "diffusers-bf16", "diffusers-bf16-compile"):
        torch.compiler.reset()
        err = rel_err(forward(impl, bases, x, t, y, dev), ref)
        assert 1e-4 < err <= 1e-2, (impl, err)


@pytest.mark.gpu
@needs_cuda
def test_cuda_smoke_run_compiles_with_inductor_and_reports_memory(tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_speed.py"), "--smoke", "--device", "cuda",
                           "--out", str(out)], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    _check_result(json.loads(out.read_text()), "cuda")
