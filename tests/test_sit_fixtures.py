"""ditlab's flow matching reproduces the official SiT code's outputs on its tiny config (float32, CPU):
the SiT model is ditlab's DiT fed t ∈ [0, 1] as it is; paths, conversions, losses with the recorded draws,
drift and score, ODE (Euler, Heun, dopri5), SDE (Euler–Maruyama, Heun, every last step) and the likelihood.
See tests/fixtures/official_sit/README.md for every key."""
import json

import pytest
import torch
from conftest import SIT_FIXTURES

from ditlab import DiTConfig, load_model
from ditlab.diffusion.flow import create_flow, prior_logp
from ditlab.diffusion.flow_sampling import log_likelihood, ode_sample, sampling_grid, sde_sample
from ditlab.diffusion.interpolants import get_path

PATHS, PREDICTIONS = ("Linear", "GVP", "VP"), ("velocity", "noise", "score")
CONFIG = json.loads((SIT_FIXTURES / "config.json").read_text())


@pytest.fixture(scope="module")
def ref():
    from safetensors.torch import load_file

    return load_file(str(SIT_FIXTURES / "reference.safetensors"))


@pytest.fixture(scope="module")
def sit():
    """The official tiny SiT's weights in ditlab's DiT (same module names, learned Σ channels dropped)."""
    return load_model(SIT_FIXTURES / "SiT-tiny.pt", config=DiTConfig(**CONFIG["model"])).eval()


def assert_close(ours, theirs, tol=1e-5):
    """≤ tol absolute where values are O(1); relative to the largest value where they grow (noise/score samplers
    reach |x| ~ 10³, see the fixture README)."""
    assert ours.shape == theirs.shape
    err = (ours - theirs).abs().max().item()
    assert err <= tol * max(1.0, theirs.abs().max().item()), f"max error {err:.3g}"


def test_sit_model_is_ditlab_dit_with_continuous_t(sit, ref):
    with torch.no_grad():
        out = sit(ref["x"], ref["t"], ref["y"])  # t = [0, 0.3, 0.75, 1]: no ×1000
        cfg = sit.forward_with_cfg(ref["cfg_x"], ref["cfg_t"], ref["cfg_y"], 4.0, guidance_channels=3)
    assert_close(out, ref["out_full"])
    assert_close(out[:, :4], ref["out"])
    assert_close(cfg[:, :4], ref["cfg_out"])


@pytest.mark.parametrize("name", PATHS)
def test_path_coefficients_drift_diffusion_and_plan(ref, name):
    p, t, x = get_path(name), ref["path_t"], ref["conv_x"]
    (a, da), (s, ds) = p.alpha(t), p.sigma(t)
    for ours, key in [(a, "alpha"), (da, "d_alpha"), (s, "sigma"), (ds, "d_sigma"),
                      (p.d_log_alpha(t), "d_alpha_alpha_ratio"), (p.alpha(ref["path_tend"])[0], "alpha_end"),
                      (p.sigma(ref["path_tend"])[0], "sigma_end")]:
        assert_close(ours, ref[f"path_{name}_{key}"])
    ax, lam = p.drift(x, t)
    assert_close(-ax, ref[f"path_{name}_drift_mean"])  # the official code stores the negated drift
    assert_close(lam, ref[f"path_{name}_drift_var"])
    for form in ("constant", "SBDM", "sigma", "linear", "decreasing"):
        assert_close(p.diffusion(x, t, form), ref[f"path_{name}_diffusion_{form}"])
    x_t, u_t = p.interpolate(t, ref["path_x0"], ref["path_x1"])
    assert_close(x_t, ref[f"path_{name}_xt"])
    assert_close(x_t, ref[f"path_{name}_mu_t"])
    assert_close(u_t, ref[f"path_{name}_ut"])
    v = ref["conv_in"]
    assert_close(p.score_from_velocity(v, x, t), ref[f"path_{name}_score_from_velocity"])
    assert_close(p.noise_from_velocity(v, x, t), ref[f"path_{name}_noise_from_velocity"])
    assert_close(p.velocity_from_score(v, x, t), ref[f"path_{name}_velocity_from_score"])


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("pred", PREDICTIONS)
def test_training_losses_with_the_recorded_draws(sit, ref, name, pred):
    for weight in (None, "velocity", "likelihood"):
        flow = create_flow(name, pred, weight)
        t = flow.scale_t(ref["loss_u"])  # the official code's t from its uniform draw and check_interval
        with torch.no_grad():
            losses = flow.training_losses(sit, ref["loss_x1"], t, dict(y=ref["loss_y"]), noise=ref["loss_x0"])
        key = f"loss_{name}_{pred}"
        assert_close(t, ref[f"{key}_t"])
        assert_close(losses["pred"], ref[f"{key}_pred"])
        assert_close(losses["loss"], ref[f"{key}_{weight or 'none'}"])
    eps = CONFIG["create_transport"][f"{name}_{pred}"]
    assert (flow.train_eps, flow.sample_eps) == (eps["train_eps"], eps["sample_eps"])


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("pred", PREDICTIONS)
def test_drift_score_and_intervals(sit, ref, name, pred):
    flow = create_flow(name, pred)
    with torch.no_grad():
        assert_close(flow.velocity(sit, ref["fn_x"], ref["fn_t"], y=ref["fn_y"]), ref[f"drift_{name}_{pred}"])
        assert_close(flow.score(sit, ref["fn_x"], ref["fn_t"], y=ref["fn_y"]), ref[f"score_{name}_{pred}"])
    official = CONFIG["check_interval"][f"{name}_{pred}"]
    ours = {"train": flow.interval(train=True), "ode": flow.interval(), "ode_reverse": flow.interval(reverse=True)}
    for form in ("sigma", "SBDM"):
        for size in (0.04, 0.0):
            ours[f"sde_{form}_last_step_size_{size}"] = flow.interval(sde=True, diffusion_form=form,
                                                                      last_step_size=size)
    for k, v in official.items():
        assert ours[k] == pytest.approx(tuple(v), abs=1e-12), k


@pytest.mark.parametrize("name", PATHS)
@pytest.mark.parametrize("pred", PREDICTIONS)
@pytest.mark.parametrize("method", ["euler", "heun", "dopri5"])
def test_ode_sampling(sit, ref, name, pred, method):
    flow = create_flow(name, pred)
    grid = sampling_grid(flow, 9)  # the official num_steps=10 grid points
    assert_close(grid, ref[f"ode_{name}_{pred}_tgrid"])
    with torch.no_grad():
        x = ode_sample(flow, sit, ref["ode_z"], grid, method, dict(y=ref["ode_y"]))
    assert_close(x, ref[f"ode_{name}_{pred}_{'heun2' if method == 'heun' else method}"])


def test_ode_trajectory_reverse_and_cfg(sit, ref):
    flow = create_flow("linear", "velocity")
    with torch.no_grad():
        traj = ode_sample(flow, sit, ref["ode_z"], sampling_grid(flow, 9), "euler", dict(y=ref["ode_y"]),
                          trajectory=True)
        grid = sampling_grid(flow, 9, reverse=True)  # data -> noise, the velocity at the true t
        back = ode_sample(flow, sit, ref["ode_rev_x"], grid, "euler", dict(y=ref["ode_y"]))
    assert_close(traj, ref["ode_Linear_velocity_euler_traj"])
    assert_close(grid, ref["ode_rev_Linear_velocity_tgrid"])
    assert_close(back, ref["ode_rev_Linear_velocity_euler"])
    kw = dict(y=ref["ode_cfg_y"], cfg_scale=4.0, guidance_channels=3)  # SiT guides channels 0..2
    for method in ("euler", "heun", "dopri5"):
        with torch.no_grad():
            x = ode_sample(flow, sit.forward_with_cfg, ref["ode_cfg_z"], sampling_grid(flow, 9), method, kw)
        assert_close(x, ref[f"ode_cfg_Linear_velocity_{'heun2' if method == 'heun' else method}"])


NONFINITE = [s.split(":")[0] for s in CONFIG["skipped"] if "non-finite" in s]  # the official code gives NaN there
SDE_RUNS = [k for k in CONFIG["entries"]["sde_runs"] if k not in NONFINITE]


@pytest.mark.parametrize("key", NONFINITE)
def test_sde_runs_the_official_code_turns_to_nan_are_refused(key):
    _, name, pred, method, form, last = key.split("_")
    with pytest.raises(ValueError, match="SBDM"):
        sampling_grid(create_flow(name, pred), 9, sde=True, diffusion_form=form)


@pytest.mark.parametrize("key", SDE_RUNS)
def test_sde_sampling_with_the_recorded_draws(sit, ref, key):
    _, name, pred, method, form, last = key.split("_")
    flow = create_flow(name, pred)
    size = CONFIG["entries"]["sde_runs"][key]["last_step_size"]
    grid = sampling_grid(flow, 9, sde=True, diffusion_form=form, last_step_size=size)
    assert_close(grid, ref[f"{key}_tgrid"])
    with torch.no_grad():
        xs = sde_sample(flow, sit, ref["ode_z"], grid, trajectory=True, method=method.lower(),
                        model_kwargs=dict(y=ref["ode_y"]), diffusion_form=form,
                        last_step=None if last == "None" else last.lower(), last_step_size=size,
                        draws=ref["sde_noise"])
    assert_close(xs[-1], ref[key])
    if f"{key}_traj" in ref:
        assert_close(xs, ref[f"{key}_traj"])


def test_sde_with_guidance(sit, ref):
    flow = create_flow("linear", "velocity")
    with torch.no_grad():
        x = sde_sample(flow, sit.forward_with_cfg, ref["ode_cfg_z"], sampling_grid(flow, 9, sde=True),
                       model_kwargs=dict(y=ref["ode_cfg_y"], cfg_scale=4.0, guidance_channels=3),
                       draws=ref["sde_cfg_noise"])
    assert_close(x, ref["sde_cfg_Linear_velocity_Euler_sigma_Mean"])


def test_likelihood_with_the_recorded_rademacher_draws(sit, ref):
    flow = create_flow("linear", "velocity")
    with torch.no_grad():
        logp, z = log_likelihood(flow, sit, ref["lik_x"], 9, "euler", dict(y=ref["ode_y"]),
                                 rademacher=ref["lik_rademacher"])
    assert_close(z, ref["lik_Linear_velocity_euler_z"])
    assert_close(logp, ref["lik_Linear_velocity_euler_logp"])
    assert_close(prior_logp(ref["lik_Linear_velocity_euler_z"]), ref["lik_prior_logp"])
