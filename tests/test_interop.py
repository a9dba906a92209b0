"""diffusers interop: model conversion both ways, the stock-diffusers deviation, DiTPipeline, diffusers
schedulers against ditlab's own samplers, and multi-process sampling into an ADM .npz."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from ditlab.diffusion import create_diffusion, get_beta_schedule, space_timesteps
from ditlab.sampling import Guidance, sample_with_scheduler
from ditlab.hub.interop import (DIT_BETAS, from_diffusers, is_exact, load_pipeline, make_exact, scheduler_from_name,
                                to_diffusers, to_pipeline)
from ditlab.model import DiT, DiTConfig

diffusers = pytest.importorskip("diffusers")

CONFIGS = {  # sizes, patch sizes, in_channels 1/3/4, learn_sigma on/off, with and without a null class
    "tiny-official": DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4,
                               num_classes=10),
    "gray-p4-no-sigma-no-null": DiTConfig(input_size=16, patch_size=4, in_channels=1, hidden_size=48, depth=2,
                                          num_heads=3, num_classes=10, learn_sigma=False, class_dropout_prob=0.0),
    "latent-p8-1000": DiTConfig(input_size=32, patch_size=8, in_channels=4, hidden_size=32, depth=3, num_heads=2,
                                num_classes=1000),
    "rgb-p1": DiTConfig(input_size=4, patch_size=1, in_channels=3, hidden_size=16, depth=1, num_heads=1,
                        num_classes=5, learn_sigma=False),
}


def randomize(model, seed=0, std=0.1):
    """Non-zero weights everywhere (a fresh DiT's zero-initialised adaLN would hide mapping errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model.eval()


def inputs(c: DiTConfig, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c.in_channels, *c.hw, generator=g)
    t = torch.tensor([0, 10, 500, 999])[:n]
    top = c.num_classes + 1 if c.has_null_class else c.num_classes  # include the null label when there is one
    y = torch.randint(0, top, (n,), generator=g)
    y[-1] = top - 1
    return x, t, y


def tiny_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                                   up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                                   layers_per_block=1, sample_size=16).eval()


# ---- model conversion ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
def test_diffusers_round_trip_is_exact(name):
    c = CONFIGS[name]
    model = randomize(DiT(c))
    x, t, y = inputs(c)
    transformer = to_diffusers(model)
    assert isinstance(transformer, diffusers.DiTTransformer2DModel) and is_exact(transformer)
    assert transformer.config.out_channels == c.out_channels and transformer.config.norm_eps == 1e-6
    with torch.no_grad():
        ours, theirs = model(x, t, y), transformer(x, t, y).sample
        assert ours.abs().mean() > 0.1  # a non-trivial output
        assert (ours - theirs).abs().max() <= 1e-5
        back = from_diffusers(transformer, class_dropout_prob=c.class_dropout_prob)
        assert back.config == c
        sd, sd_back = model.state_dict(), back.state_dict()
        assert sd.keys() == sd_back.keys() and all(torch.equal(sd[k], sd_back[k]) for k in sd)
        assert torch.equal(back(x, t, y), ours)


def test_stock_diffusers_deviates_3_percent_and_make_exact_fixes_it(official_model, reference):
    """Stock DiTTransformer2DModel: timestep frequencies /127 (downscale_freq_shift=1) and LayerNorm eps 1e-5."""
    x, t, y, ref = reference["x"], reference["t"], reference["y"], reference["out"]
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    stock = to_diffusers(official_model, exact=False)
    assert not is_exact(stock)
    with torch.no_grad():
        assert 0.025 < rel(stock(x, t, y).sample) < 0.045  # measured: 3.3 %
        for b in stock.transformer_blocks:  # the eps alone is not what matters ...
            b.norm3.eps = 1e-6
        assert rel(stock(x, t, y).sample) > 0.025
        for b in stock.transformer_blocks:  # ... the timestep frequencies are
            b.norm1.emb.time_proj.downscale_freq_shift = 0
        assert rel(stock(x, t, y).sample) < 1e-6
        exact = make_exact(to_diffusers(official_model, exact=False))
        assert is_exact(exact) and torch.allclose(exact(x, t, y).sample, ref, rtol=1e-5, atol=1e-5)


def test_from_diffusers_needs_shared_embedders_and_matches_exact_model():
    cfg = dict(num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
               sample_size=8, patch_size=2, num_embeds_ada_norm=10)
    transformer = diffusers.DiTTransformer2DModel(**cfg).eval()
    randomize(transformer)
    with pytest.raises(ValueError, match="embedder"):  # a fresh diffusers DiT has one embedder per block
        from_diffusers(transformer)
    with torch.no_grad():
        for b in transformer.transformer_blocks[1:]:
            b.norm1.emb.load_state_dict(transformer.transformer_blocks[0].norm1.emb.state_dict())
    model = from_diffusers(transformer)
    assert model.config.learn_sigma and model.config.num_classes == 10 and model.config.hidden_size == 32
    x, t, y = inputs(model.config)
    with torch.no_grad():
        stock = transformer(x, t, y).sample
        exact = make_exact(transformer)(x, t, y).sample
        ours = model(x, t, y)
    assert (ours - exact).abs().max() <= 1e-5
    assert (ours - stock).abs().max() > 1e-3


@pytest.mark.parametrize("change, match", [(dict(block="adaLN"), "adaLN-Zero"),
                                           (dict(block="cross-attention"), "adaLN-Zero"),
                                           (dict(pos_embed="learned"), "learned"),
                                           (dict(mlp_ratio=2.0), "mlp_ratio"),
                                           (dict(input_size=(8, 16)), "square")])
def test_to_diffusers_rejects_what_diffusers_cannot_express(change, match):
    with pytest.raises(ValueError, match=match):
        to_diffusers(DiT(CONFIGS["tiny-official"].replace(**change)))


# ---- diffusers schedulers vs ditlab samplers -----------------------------------------------------------
@pytest.mark.parametrize("steps", [10, 50])
def test_scheduler_timesteps_match_ditlab_respacing(steps):
    ddim, ddpm = scheduler_from_name("ddim"), scheduler_from_name("ddpm")
    ddim.set_timesteps(steps)
    ddpm.set_timesteps(steps)
    assert sorted(ddim.timesteps.tolist()) == space_timesteps(1000, f"ddim{steps}")
    assert sorted(ddpm.timesteps.tolist()) == space_timesteps(1000, str(steps))
    ddpm.set_timesteps(250)
    assert sorted(ddpm.timesteps.tolist()) == space_timesteps(1000, "250")  # the paper's sampler


def _guided(model, z, y, cfg):
    null = torch.full_like(y, model.config.num_classes)
    return dict(noise=torch.cat([z, z]), model_kwargs=dict(y=torch.cat([y, null]), cfg_scale=cfg, guidance_channels=3))


def test_diffusers_ddim_equals_ditlab_ddim(official_model):
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([1, 2, 3])
    ref = create_diffusion("ddim10").ddim_sample_loop(official_model.forward_with_cfg,
                                                      **_guided(official_model, z, y, 4.0))
    out, traj = sample_with_scheduler(official_model, scheduler_from_name("ddim"), z, y, 10, cfg_scale=4.0,
                                      guidance_channels=3, trajectory=True)
    assert torch.allclose(out, ref[:3], rtol=1e-5, atol=1e-5 * ref.abs().max())
    assert [s["t"] for s in traj] == list(range(900, -1, -100)) and torch.equal(traj[0]["x_t"], z)
    x0 = traj[-1]["pred_x0"]
    assert torch.allclose(x0, out, rtol=1e-4, atol=1e-4 * out.abs().max())  # last DDIM step lands on x̂0


def test_diffusers_ddpm_learned_sigma_equals_ditlab_ddpm(official_model):
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    y = torch.tensor([0, 5, 9])
    ref = create_diffusion("10").p_sample_loop(official_model.forward_with_cfg,
                                               generator=torch.Generator().manual_seed(7),
                                               **_guided(official_model, z, y, 1.5))
    out, _ = sample_with_scheduler(official_model, scheduler_from_name("ddpm"), z, y, 10, cfg_scale=1.5,
                                   guidance_channels=3, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(out, ref[:3], rtol=1e-5, atol=1e-5 * ref.abs().max())


class GaussianOracle(torch.nn.Module):
    """The exact ε-prediction for data x0 ~ N(mu, s²) per pixel:
    E[ε | x_t] = √(1−ᾱ)(x_t − √ᾱ mu)/(ᾱ s² + 1 − ᾱ)."""

    def __init__(self, mu=0.5, s=0.3):
        super().__init__()
        self.mu, self.s = mu, s
        self.ac = torch.from_numpy(np.cumprod(1 - get_beta_schedule("linear")))

    def forward(self, x, t, y):
        a = self.ac[t.long().cpu()].view(-1, 1, 1, 1)
        return ((1 - a).sqrt() * (x.double() - a.sqrt() * self.mu) / (a * self.s ** 2 + 1 - a)).float()


def test_dpm_solver_follows_the_probability_flow_of_a_gaussian():
    """For Gaussian data the probability-flow ODE maps x_T to mu + s·x_T/σ_T: an ODE solver that feeds the
    model the right timesteps lands there."""
    m = GaussianOracle()
    z = torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    a = m.ac[-1].float()
    target = m.mu + m.s * (z - a.sqrt() * m.mu) / (a * m.s ** 2 + 1 - a).sqrt()
    out, _ = sample_with_scheduler(m, scheduler_from_name("dpm-solver"), z, torch.zeros(8, dtype=torch.long), 50)
    err = out - target
    assert err.std() < 0.01 and err.abs().max() < 0.05
    assert abs(float(out.std()) - m.s) < 0.02


def test_scheduler_errors(official_model):
    z, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="ddim"):
        scheduler_from_name("euler-ish")
    no_sigma = randomize(DiT(CONFIGS["tiny-official"].replace(learn_sigma=False)))
    with pytest.raises(ValueError, match="fixed_large"):
        sample_with_scheduler(no_sigma, scheduler_from_name("ddpm"), z, y, 2)
    with pytest.raises(ValueError, match="variance_type"):
        sample_with_scheduler(official_model, scheduler_from_name("dpm-solver", variance_type="learned_range"), z, y, 2)
    with pytest.raises(ValueError, match="labels"):
        sample_with_scheduler(official_model, scheduler_from_name("ddim"), z, y[:1], 2)
    with pytest.raises(TypeError, match="scheduler"):
        sample_with_scheduler(official_model, "ddim", z, y, 2)
    out, _ = sample_with_scheduler(no_sigma, scheduler_from_name("ddpm", variance_type="fixed_large"), z, y, 2)
    assert out.shape == z.shape and torch.isfinite(out).all()


def test_ditlab_sample_dispatches_to_diffusers_schedulers(official_model):
    """ditlab.sample(sampler=<scheduler>) == ditlab.sample(sampler="ddpm"): same steps, noise and Σ."""
    from ditlab.sampling import sample

    kw = dict(steps=10, cfg_scale=Guidance(4.0, channels=3), seed=3, progress=False, trajectory=True)
    ours = sample(official_model, [1, 2], sampler="ddpm", **kw)
    theirs = sample(official_model, [1, 2], sampler=scheduler_from_name("ddpm"), **kw)
    assert [s["t"] for s in theirs.trajectory] == [s["t"] for s in ours.trajectory] == space_timesteps(1000, "10")[::-1]
    for a, b in zip(ours.trajectory, theirs.trajectory):  # unclamped states, relative tolerance
        assert torch.allclose(a["x_t"], b["x_t"], rtol=1e-5, atol=1e-6 * a["x_t"].abs().max())
    assert torch.allclose(ours.images, theirs.images, atol=1e-4)


# ---- pipeline ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet_model():
    return randomize(DiT(DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2,
                                   num_heads=2, num_classes=1000)), std=0.2)


def test_pipeline_matches_ditlab_and_survives_save_load(imagenet_model, tmp_path):
    vae = tiny_vae()
    pipe = to_pipeline(imagenet_model, vae=vae)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.get_label_ids(["golden retriever", "tench"]) == [207, 0]
    run = lambda p: p(class_labels=[207, 1], guidance_scale=4.0, num_inference_steps=5,  # noqa: E731
                      generator=torch.manual_seed(0), output_type="np").images
    images = run(pipe)
    assert images.shape == (2, 16, 16, 3) and images.std() > 0.01
    # the same samples from ditlab: DiTPipeline guides all latent channels (guidance_channels=None)
    z = torch.randn((2, 4, 8, 8), generator=torch.manual_seed(0))
    x0, _ = sample_with_scheduler(imagenet_model, scheduler_from_name("ddim"), z, torch.tensor([207, 1]), 5,
                                  cfg_scale=4.0)
    with torch.no_grad():
        ours = (vae.decode(x0 / 0.18215).sample / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours - images).max() < 1e-5

    pipe.save_pretrained(tmp_path / "pipe")
    stock = diffusers.DiTPipeline.from_pretrained(tmp_path / "pipe")  # the freq. shift is not a config option
    stock.set_progress_bar_config(disable=True)
    assert not is_exact(stock.transformer) and stock.transformer.config.norm_eps == 1e-6
    assert np.abs(run(stock) - images).max() > 1e-3
    loaded = load_pipeline(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert is_exact(loaded.transformer) and loaded.get_label_ids(["golden retriever"]) == [207]
    assert np.array_equal(run(loaded), images)


def test_pipeline_input_errors(imagenet_model):
    vae = tiny_vae()
    with pytest.raises(ValueError, match="num_classes=1000"):
        to_pipeline(randomize(DiT(CONFIGS["tiny-official"])), vae=vae)
    pixel = DiT(CONFIGS["rgb-p1"].replace(num_classes=1000, class_dropout_prob=0.1))
    with pytest.raises(ValueError, match="pixel-space"):
        to_pipeline(pixel)
    with pytest.raises(ValueError, match="variance"):
        to_pipeline(imagenet_model, vae=vae, scheduler=scheduler_from_name("ddpm"))
    with pytest.raises(ValueError, match="init_noise_sigma"):
        to_pipeline(imagenet_model, vae=vae, scheduler=diffusers.EulerDiscreteScheduler(**DIT_BETAS))
    pipe = to_pipeline(imagenet_model, vae=vae, scheduler=scheduler_from_name("dpm-solver"))
    assert isinstance(pipe.scheduler, diffusers.DPMSolverMultistepScheduler)


# ---- evaluation interop: torchrun sampling into an ADM .npz ---------------------------------------
def test_sample_ddp_two_processes_write_adm_npz(tmp_path):
    from ditlab.checkpoint import save_model
    from ditlab.sampling import sample

    model = randomize(DiT(CONFIGS["rgb-p1"].replace(input_size=8, patch_size=2, class_dropout_prob=0.1)), std=0.05)
    ckpt = save_model(model, tmp_path / "m.safetensors")
    out = tmp_path / "samples.npz"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "ditlab.hub.sample_ddp", "--ckpt", str(ckpt), "--num-samples", "7", "--per-proc-batch-size", "2",
           "--steps", "3", "--sampler", "ddim", "--cfg-scale", "2", "--out", str(out)]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    data = np.load(out)
    assert data["arr_0"].shape == (7, 8, 8, 3) and data["arr_0"].dtype == np.uint8
    assert data["arr_1"].shape == (7,) and data["arr_1"].max() < 5
    assert not (tmp_path / ".samples.npz.shards").exists()
    imgs = data["arr_0"]  # rank 0 wrote samples 0-3, rank 1 samples 4-6
    assert not np.array_equal(imgs[0], imgs[4]) and len({im.tobytes() for im in imgs}) == 7
    # rank 1's first batch used seed 0 + 0*2 + 1: reproducible in one process
    again = sample(model, data["arr_1"][4:6].tolist(), steps=3, sampler="ddim", cfg_scale=2.0, seed=1, progress=False)
    expect = ((again.images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(expect, imgs[4:6])
