"""Flow matching beyond the fixtures: path identities, timestep sampling, SD3's shift, the samplers' accuracy on
a known field, training / sampling / checkpoints / CLI with an objective, the playground's sampler choice."""
import json
import math
import sys

import pytest
import torch

import ditlab
from ditlab.cli import main
from ditlab.diffusion.flow import create_flow, time_shift
from ditlab.diffusion.flow_sampling import log_likelihood, ode_sample, sampling_grid, sde_sample
from ditlab.diffusion.interpolants import DIFFUSION_FORMS, get_path
from ditlab.sampling import DDPM_SAMPLERS, FLOW_SAMPLERS, Guidance, Sampler

TINY = dict(model="DiT-Nano/4", model_args={"depth": 1, "hidden_size": 32, "num_heads": 2}, data="digits",
            image_size=16, limit=256, batch_size=16, log_every=1, sample_every=0, progress=False)


@pytest.mark.parametrize("name", ["linear", "gvp", "vp"])
def test_paths_conversions_round_trip_and_match_the_definitions(name):
    p, t = get_path(name), torch.tensor([0.1, 0.4, 0.7, 0.9])
    x0, x1 = torch.randn(4, 2, 3, 3, dtype=torch.float64), torch.randn(4, 2, 3, 3, dtype=torch.float64)
    t = t.double()
    x_t, u_t = p.interpolate(t, x0, x1)
    # the exact conditional quantities: score of N(α·x1, σ²) at x_t is −x0/σ; data is x1
    sigma = p.sigma(t)[0].view(-1, 1, 1, 1)
    score = -x0 / sigma
    torch.testing.assert_close(p.velocity_from_score(score, x_t, t), u_t)
    torch.testing.assert_close(p.score_from_velocity(u_t, x_t, t), score)
    torch.testing.assert_close(p.noise_from_velocity(u_t, x_t, t), x0)
    torch.testing.assert_close(p.data_from_velocity(u_t, x_t, t), x1)
    h = 1e-6  # α̇ and σ̇ are the derivatives of α and σ
    torch.testing.assert_close(p.alpha(t)[1], (p.alpha(t + h)[0] - p.alpha(t - h)[0]) / (2 * h), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(p.sigma(t)[1], (p.sigma(t + h)[0] - p.sigma(t - h)[0]) / (2 * h), rtol=1e-5, atol=1e-6)
    assert p.diffusion(x_t, t, "increasing-decreasing").shape == (4, 1, 1, 1)


def test_linear_path_is_rectified_flow():
    p, t = get_path("Linear"), torch.tensor([0.25])
    x0, x1 = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2)
    x_t, u_t = p.interpolate(t, x0, x1)
    torch.testing.assert_close(x_t, 0.25 * x1 + 0.75 * x0)
    torch.testing.assert_close(u_t, x1 - x0)  # straight lines, constant speed


def test_bad_flow_options_are_refused():
    for kw, match in [(dict(path="cosine"), "path must be one of"), (dict(prediction="x0"), "prediction must be"),
                      (dict(loss_weight="snr"), "loss_weight must be"), (dict(t_sampling="beta"), "t_sampling must"),
                      (dict(logit_std=0), "logit_std")]:
        with pytest.raises(ValueError, match=match):
            create_flow(**kw)
    with pytest.raises(ValueError, match="diffusion_form must be one of"):
        get_path("linear").diffusion(torch.zeros(1, 1, 1, 1), torch.ones(1), "exponential")
    assert "increasing-decreasing" in DIFFUSION_FORMS
    with pytest.raises(ValueError, match="time_shift"):
        time_shift(torch.ones(2), 0)


def test_logit_normal_and_uniform_timesteps():
    g = torch.Generator().manual_seed(0)
    u = create_flow(t_sampling="uniform").sample_t(20000, g)
    ln = create_flow(t_sampling="logit-normal").sample_t(20000, g)
    assert 0 <= u.min() and u.max() <= 1 and abs(u.mean() - 0.5) < 0.01 and abs(u.std() - 1 / math.sqrt(12)) < 0.01
    logit = torch.log(ln / (1 - ln))  # logit(t) ~ N(0, 1) (SD3 with m = 0, s = 1)
    assert abs(logit.mean()) < 0.03 and abs(logit.std() - 1) < 0.03
    assert ((ln > 0.25) & (ln < 0.75)).float().mean() > ((u > 0.25) & (u < 0.75)).float().mean() + 0.1
    shifted = 1 - create_flow(t_sampling="logit-normal", logit_mean=1.0).sample_t(20000, g)  # σ = 1 − t
    assert torch.log(shifted / (1 - shifted)).mean() == pytest.approx(1.0, abs=0.03)  # m > 0: more noise, as SD3


def test_sd3_time_shift():
    t = torch.linspace(0, 1, 5)
    torch.testing.assert_close(time_shift(t, 1.0), t)
    s = time_shift(t, 3.0)
    torch.testing.assert_close(s[[0, -1]], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(s[2], torch.tensor(1 - 1.5 / 2))  # σ = 0.5 -> 3·0.5/(1 + 2·0.5) = 0.75
    assert (s <= t).all()  # more of the grid near the noise end
    grid = sampling_grid(create_flow(), 4, shift=3.0)
    assert grid.shape == (5,) and grid[1] < 0.25


def _gaussian_field(mu, s):
    """Exact velocity of the Linear path when the data is N(mu, s²), a model with a known answer:
    v = E[x1 − x0 | x_t] = mu + (t·s² − (1 − t))·(x − t·mu) / Var[x_t]; its flow maps z to mu + s·z."""
    def model(x, t, **_):
        tt = t.view(-1, 1, 1, 1)
        var = tt**2 * s**2 + (1 - tt) ** 2
        return mu + (tt * s**2 - (1 - tt)) * (x - tt * mu) / var
    return model


def test_ode_samplers_transport_noise_to_the_data_distribution_and_heun_beats_euler():
    flow, mu, s = create_flow(), 2.0, 0.5
    model = _gaussian_field(mu, s)
    z = torch.randn(4000, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    grid = sampling_grid(flow, 16)
    err = {}
    for method in ("euler", "heun", "dopri5"):
        x = ode_sample(flow, model, z, grid, method)
        assert abs(x.mean() - mu) < 0.05 and abs(x.std() - s) < 0.05, method
        exact = mu + s * z  # the exact flow map of a Gaussian: affine
        err[method] = (x - exact).abs().max().item()
    assert err["heun"] < err["euler"] / 5 and err["dopri5"] < err["euler"] / 2
    tight = ode_sample(flow, model, z, grid, "dopri5", atol=1e-9, rtol=1e-7)  # adaptive: as accurate as asked
    assert (tight - (mu + s * z)).abs().max() < 1e-4


def test_sde_sampler_reaches_the_data_distribution():
    flow, mu, s = create_flow(), -1.0, 0.3
    z = torch.randn(4000, 1, 1, 1, generator=torch.Generator().manual_seed(1))
    x = sde_sample(flow, _gaussian_field(mu, s), z, sampling_grid(flow, 100, sde=True),
                   generator=torch.Generator().manual_seed(2))
    assert abs(x.mean() - mu) < 0.05 and abs(x.std() - s) < 0.05


def test_likelihood_of_a_gaussian_is_exact():
    flow, mu, s = create_flow(), 0.5, 0.8
    x = torch.tensor([[[[0.3]]], [[[1.7]]]])
    logp, z = log_likelihood(flow, _gaussian_field(mu, s), x, 200, "heun")
    exact = -0.5 * math.log(2 * math.pi * s**2) - (x.flatten() - mu) ** 2 / (2 * s**2)
    torch.testing.assert_close(logp, exact, atol=2e-2, rtol=0)  # 1-d: Hutchinson's estimate is exact


def test_dopri5_without_torchdiffeq_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchdiffeq", None)
    with pytest.raises(ImportError, match=r"ditlab\[flow\]"):
        ode_sample(create_flow(), lambda x, t: x, torch.zeros(1, 1, 1, 1), torch.linspace(0, 1, 3), "dopri5")


def test_flow_training_lowers_the_loss_and_checkpoints_record_the_objective(tmp_path):
    run = ditlab.train(**TINY, steps=30, lr=3e-3, ckpt_every=30, out_dir=str(tmp_path / "run"), objective="flow",
                       t_sampling="logit-normal")
    losses = [r["loss"] for r in run["log"]]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5
    assert not run["config"].learn_sigma  # a flow model predicts C channels
    model = ditlab.load_model(tmp_path / "run")
    assert model.objective == dict(objective="flow", path="linear", prediction="velocity", loss_weight=None,
                                   train_eps=0.0, sample_eps=0.0, t_sampling="logit-normal")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())["train"]
    assert cfg["objective"] == "flow" and cfg["t_sampling"] == "logit-normal"
    for sampler in FLOW_SAMPLERS:
        out = ditlab.sample(model, [1, 2], steps=3, sampler=sampler, progress=False)
        assert out.images.shape == (2, 1, 16, 16) and torch.isfinite(out.images).all()
    assert ditlab.sample(model, [1], steps=5, progress=False).nfe == 5  # default: Euler, one evaluation per step
    assert ditlab.sample(model, [1], steps=5, sampler="heun", progress=False).nfe == 10
    # the wrong family is refused with the objective named; so is resuming with another objective
    with pytest.raises(ValueError, match="trained with objective 'flow'.*use one of"):
        ditlab.sample(model, [1], sampler="ddim")
    with pytest.raises(ValueError, match="cannot resume.*objective"):
        ditlab.train(**TINY, steps=31, out_dir=str(tmp_path / "run"), resume=True, objective="ddpm")


def test_ddpm_models_refuse_flow_samplers_and_options():
    model = ditlab.build_model("DiT-Pico/4", input_size=8).eval()
    assert ditlab.sampling.samplers_for(model) == DDPM_SAMPLERS
    with pytest.raises(ValueError, match="trained with objective 'ddpm'.*'ddim', 'ddpm'"):
        ditlab.sample(model, [1], sampler="euler")
    with pytest.raises(ValueError, match="flow-matching models"):
        ditlab.sample(model, [1], steps=2, sampler=Sampler(time_shift=3.0))
    with pytest.raises(ValueError, match="sampler must be one of"):
        ditlab.sample(model, [1], sampler="rk4")


def test_train_config_validates_the_objective():
    with pytest.raises(ValueError, match="objective must be one of"):
        ditlab.TrainConfig(objective="edm")
    with pytest.raises(ValueError, match="t_sampling='logit-normal' applies to objective='flow'"):
        ditlab.TrainConfig(objective="ddpm", t_sampling="logit-normal")
    with pytest.raises(ValueError, match="path must be one of"):
        ditlab.TrainConfig(objective="flow", path="cosine")


def _flow_model():
    torch.manual_seed(0)
    model = ditlab.build_model("DiT-Pico/4", input_size=8, learn_sigma=False).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    model.objective = create_flow().describe()
    return model


def test_cfg_interval_guides_only_inside_and_saves_evaluations():
    model, calls = _flow_model(), []
    forward = model.forward

    def counting(x, t, y, *a, **kw):
        calls.append((round(float(t[0]), 3), len(x)))
        return forward(x, t, y, *a, **kw)

    model.forward = counting
    try:
        full = ditlab.sample(model, [1, 2], steps=4, cfg_scale=3.0, progress=False)
        calls.clear()
        part = ditlab.sample(model, [1, 2], steps=4, cfg_scale=Guidance(3.0, interval=(0.3, 0.8)),
                             progress=False)
        plain = ditlab.sample(model, [1, 2], steps=4, cfg_scale=1.0, progress=False)
    finally:
        del model.forward
    guided = [t for t, n in calls[:4] if n == 4]
    assert guided == [0.5, 0.75] and [n for t, n in calls[:4] if t in (0.0, 0.25)] == [2, 2]
    assert not torch.allclose(part.images, full.images) and not torch.allclose(part.images, plain.images)
    with pytest.raises(ValueError, match="cfg_interval"):
        ditlab.sample(model, [1], cfg_scale=Guidance(interval=(0.8, 0.3)))


def test_flow_trajectory_predicts_the_data():
    out = ditlab.sample(_flow_model(), [3], steps=4, cfg_scale=1.0, trajectory=True, progress=False)
    assert [s["t"] for s in out.trajectory] == [0.0, 0.25, 0.5, 0.75]
    assert out.trajectory[0]["x_t"].shape == out.trajectory[0]["pred_x0"].shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="trajectory"):
        ditlab.sample(_flow_model(), [3], steps=2, sampler="dopri5", trajectory=True)


def test_cli_train_and_sample_with_the_flow_objective(tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--model", "DiT-Nano/4", "--model-args", '{"depth": 1, "hidden_size": 32, "num_heads": 2}',
          "--data", "digits", "--image-size", "16", "--limit", "128", "--steps", "2", "--batch-size", "8",
          "--sample-every", "0", "--no-progress", "--out-dir", str(run), "--objective", "flow", "--path", "linear",
          "--prediction", "velocity", "--t-sampling", "logit-normal"])
    main(["sample", "--ckpt", str(run), "--sampler", "euler", "--steps", "3", "--labels", "1,2",
          "--time-shift", "2", "--cfg-interval", "0.2,0.9", "--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").exists() and "2 images" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="does not fit this model.*flow"):
        main(["sample", "--ckpt", str(run), "--sampler", "ddim", "--labels", "1", "--out", str(tmp_path / "x.png")])


def test_flow_checkpoint_export_and_playground_offers_flow_samplers(tmp_path, monkeypatch):
    from ditlab import zoo
    from ditlab.teach import explore, widgets

    monkeypatch.setenv("DITLAB_CACHE", str(tmp_path / "cache"))
    ditlab.train(**TINY, steps=2, ckpt_every=2, out_dir=str(tmp_path / "run"), objective="flow")
    out = tmp_path / "ckpts"
    entry = zoo.export_checkpoint(tmp_path / "run", "tiny-flow", command="ditlab train --objective flow",
                                  out_dir=out, per_class=1, judge_kwargs={"smoke": True})
    assert entry["objective"]["objective"] == "flow" and entry["eval"]["sampler"] == "euler"
    monkeypatch.setenv("DITLAB_CHECKPOINTS", str(out))
    monkeypatch.setattr(explore, "_MODELS", {})
    assert ditlab.load_pretrained("tiny-flow").objective["path"] == "linear"
    assert "flow (linear, velocity, uniform t)" in zoo.write_model_card(out).read_text()
    box = widgets.playground("tiny-flow", n=2, steps=2, auto=False)
    c = box.controls
    assert list(c["sampler"].options) == list(FLOW_SAMPLERS) and c["sampler"].value == "euler"
    c["sampler"].value = "sde-euler"
    c["button"].click()
    assert "2 images, 2 sde-euler steps" in c["status"].value
