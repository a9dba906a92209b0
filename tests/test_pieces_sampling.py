"""The pieces of notebooks 06 and 07 (`ditlab.teach.pieces_sampling`): a DDPM step, a DDIM step, an Euler step.
The notebooks' own solutions pass (against ditlab and the official code's outputs), their blanks read "not written
yet", each typical mistake gets its own hint (never the expected values), and the fallbacks work as the later cells
call them."""
import json

import pytest
import torch
from conftest import ROOT, load_script

from ditlab.diffusion import create_diffusion
from ditlab.teach import pieces_sampling
from ditlab.teach.pieces import PIECES, RESULTS, grade
from ditlab.teach.student import blank

NB06 = ROOT / "notebooks" / "06_sampling.ipynb"
NB07 = ROOT / "notebooks" / "07_flow_matching.ipynb"
PIECE = {"ddpm_step": (NB06, "def my_ddpm_step("), "ddim_step": (NB06, "def my_ddim_step("),
         "euler_step": (NB07, "def my_euler_step(")}


def _code_cells(notebook):
    return ["".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]


def _source(name) -> str:
    notebook, start = PIECE[name]
    (src,) = [s for s in _code_cells(notebook) if s.startswith(start)]
    return src


def _fn(name, source=None):
    ns = {"torch": torch}
    exec(source or _source(name), ns)
    return ns["my_" + name]


def _mistake(name, old, new):
    src = _source(name)
    assert old in src, f"the solution of {name} no longer holds {old!r}"
    return _fn(name, src.replace(old, new))


@pytest.mark.parametrize("name", list(PIECE))
def test_the_notebooks_solution_passes_and_runs_the_official_comparison(name):
    outcome, message = grade(name, _fn(name))
    assert outcome == "correct", message
    assert RESULTS[name] == {"outcome": "correct", "official": True}
    assert "official" in message and "did not run" not in message


@pytest.mark.parametrize("name", list(PIECE))
def test_the_blank_is_not_written_yet(name):
    notebook, _ = PIECE[name]
    student = blank(_source(name))
    assert "### BEGIN SOLUTION" not in student and "raise NotImplementedError" in student
    generated = json.loads((notebook.parent / "student" / notebook.name).read_text())["cells"]
    assert student in ["".join(c["source"]) for c in generated], \
        f"regenerate notebooks/student/: python notebooks/regenerate.py {notebook.name[:2]}"
    assert grade(name, _fn(name, student)) == ("blank", f"{name}: not written yet")


AB_PREV = "ab_prev = alpha_bar[i - 1] if i > 0 else torch.ones((), dtype=alpha_bar.dtype)"
X0 = "x0_hat = (x - (1 - ab).sqrt() * eps) / ab.sqrt()"
MISTAKES = [  # (piece, old, new, a piece of the hint)
    ("ddpm_step", AB_PREV, "ab_prev = alpha_bar[i - 1]", "wraps around"),
    ("ddpm_step", AB_PREV, "ab_prev = alpha_bar[min(i + 1, len(alpha_bar) - 1)]", "the step after i"),
    ("ddpm_step", AB_PREV, "ab_prev = ab", "returns x_i unchanged"),
    ("ddpm_step", X0, "x0_hat = (x - (1 - ab_prev).sqrt() * eps) / ab_prev.sqrt()", "x̂_0 uses ᾱ of step"),
    ("ddpm_step", X0, "x0_hat = (x - (1 - ab) * eps) / ab.sqrt()", "x̂_0 misses a square root"),
    ("ddpm_step", "beta * ab_prev.sqrt() / (1 - ab)", "beta * ab_prev / (1 - ab)", "coefficient of x̂_0"),
    ("ddpm_step", "(1 - ab_prev) * (1 - beta).sqrt() / (1 - ab)", "(1 - ab_prev) * (1 - beta) / (1 - ab)",
     "coefficient of x_i"),
    ("ddpm_step", "frac = (v + 1) / 2", "frac = v", "(v + 1)/2"),
    ("ddpm_step", "torch.exp(0.5 * log_var) * z", "torch.exp(log_var) * z", "standard deviation"),
    ("ddpm_step", "mean + (i > 0) * torch.exp", "mean + torch.exp", "noise at the last step"),
    ("ddim_step", "return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps",
     "return ab_prev.sqrt() * eps + (1 - ab_prev).sqrt() * x0_hat", "swapped"),
    ("ddim_step", "return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps",
     "return ab.sqrt() * x0_hat + (1 - ab).sqrt() * eps", "returns x_i unchanged"),
    ("ddim_step", "return ab_prev.sqrt() * x0_hat + (1 - ab_prev).sqrt() * eps",
     "return ab_prev * x0_hat + (1 - ab_prev).sqrt() * eps", "weight of x̂_0"),
    ("ddim_step", AB_PREV, "ab_prev = alpha_bar[i - 1]", "wraps around"),
    ("ddim_step", AB_PREV, "ab_prev = alpha_bar[min(i + 1, len(alpha_bar) - 1)]", "the step after i"),
    ("ddim_step", X0, "x0_hat = (x - (1 - ab) * eps) / ab.sqrt()", "x̂_0 misses a square root"),
    ("euler_step", "x + (t_next - t) *", "x + (t - t_next) *", "wrong sign"),
    ("euler_step", "velocity(x, t_batch)", "velocity(x, t)", "t of shape (N,)"),
    ("euler_step", "t_batch = t.expand(len(x))", "t_batch = t_next.expand(len(x))", "taken at t_next"),
    ("euler_step", "return x + (t_next - t) *", "return (t_next - t) *", "add it to x"),
]


@pytest.mark.parametrize("name, old, new, hint", MISTAKES, ids=[f"{m[0]}-{m[3][:20]}" for m in MISTAKES])
def test_each_mistake_gets_its_hint_without_the_expected_values(name, old, new, hint):
    outcome, message = grade(name, _mistake(name, old, new))
    assert outcome == "wrong" and hint in message, message
    assert "tensor(" not in message and len(message) < 400, message


def test_a_mistake_beyond_the_list_still_says_what_differs():
    outcome, message = grade("ddpm_step", _mistake("ddpm_step", "frac = (v + 1) / 2", "frac = (v + 1) / 3"))
    assert outcome == "wrong" and "differs" in message and "max difference" in message, message
    outcome, message = grade("ddim_step", _mistake("ddim_step", "return ab_prev.sqrt()", "return 0.5 * ab_prev.sqrt()"))
    assert outcome == "wrong" and "differs" in message, message


def test_a_step_that_returns_one_tensor_is_told_the_pair():
    outcome, message = grade("ddim_step", lambda eps, x, i, alpha_bar: x)
    assert outcome == "wrong" and "pair" in message, message


def test_without_the_fixtures_the_checks_compare_with_ditlab(monkeypatch):
    def absent(name):
        raise FileNotFoundError(name)
    monkeypatch.setattr(pieces_sampling, "fixture_path", absent)
    for name in PIECE:
        outcome, message = grade(name, _fn(name))
        assert outcome == "correct" and "did not run" in message, message
        assert RESULTS[name] == {"outcome": "correct", "official": False}
    assert grade("euler_step", _mistake("euler_step", "x + (t_next - t) *", "x + (t - t_next) *"))[0] == "wrong"


@pytest.mark.parametrize("name", list(PIECE))
def test_the_fallbacks_pass_their_checks(name):
    assert grade(name, PIECES[name].fallback())[0] == "correct"


def test_the_fallbacks_run_the_notebooks_loops():
    """Notebook 06's loops call the step with the network's output and `ab_k`: the fallback's DDPM loop is ditlab's
    p_sample_loop, its DDIM loop ddim_sample_loop; notebook 07's my_euler with the fallback is ditlab's sampler."""
    sampler = create_diffusion("5")
    ab_k = sampler.alphas_cumprod
    def model(x, t, y):  # a stand-in network: ε̂ and v ∈ [−1, 1] depend on x and t
        return torch.cat([0.5 * x.flip(1) * (1 + t.float().view(-1, 1, 1, 1) / 1000), torch.tanh(x)], dim=1)
    ddpm, ddim = PIECES["ddpm_step"].fallback(), PIECES["ddim_step"].fallback()
    gen = torch.Generator().manual_seed(0)
    x = z = torch.randn(2, 2, 4, 4, generator=gen)
    y = torch.zeros(2, dtype=torch.long)
    with torch.no_grad():
        for i in reversed(range(len(ab_k))):
            eps, v = model(x, sampler.timestep_map[i].repeat(2), y).split(2, dim=1)
            x, _ = ddpm(eps, v, x, i, ab_k, torch.randn(x.shape, generator=gen))
        gen = torch.Generator().manual_seed(0)
        want = sampler.p_sample_loop(model, noise=torch.randn(2, 2, 4, 4, generator=gen), model_kwargs=dict(y=y),
                                     generator=gen)
        assert torch.allclose(x, want, atol=1e-5)
        x = z
        for i in reversed(range(len(ab_k))):
            x, _ = ddim(model(x, sampler.timestep_map[i].repeat(2), y)[:, :2], x, i, ab_k)
        assert torch.allclose(x, sampler.ddim_sample_loop(model, noise=z, model_kwargs=dict(y=y)), atol=1e-5)
    euler, ts = PIECES["euler_step"].fallback(), torch.linspace(0, 1, 4)
    x = z
    for k in range(3):
        x = euler(lambda x_, t_: -x_ * t_.view(-1, 1, 1, 1), x, ts[k], ts[k + 1])
    assert torch.allclose(x, z * (1 - 1 / 9) * (1 - 2 / 9), atol=1e-6)


def test_the_notebooks_say_what_runs():
    cells06, cells07 = _code_cells(NB06), _code_cells(NB07)
    for cells, name in [(cells06, "ddpm_step"), (cells06, "ddim_step"), (cells07, "euler_step")]:
        i = cells.index(_source(name))
        assert cells[i + 1] == f'my_{name} = build_check("{name}", my_{name})'
        assert f'RESULTS["{name}"]["outcome"] == "correct"' in cells[i + 2]
    assert any("my_ddpm_step(eps, v, x, i, ab_k," in s for s in cells06)  # the DDPM loop uses the piece
    assert "my_euler_step(velocity, x, ts[k], ts[k + 1])" in cells07[cells07.index(_source("euler_step")) + 2]


@pytest.mark.slow
@pytest.mark.parametrize("notebook, names", [(NB06, ("ddpm_step", "ddim_step")), (NB07, ("euler_step",))])
def test_the_student_notebook_runs_with_the_blanks_and_goes_on_with_ditlabs(tmp_path, notebook, names):
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    regenerate = load_script(ROOT / "notebooks" / "regenerate.py")
    nb = regenerate.strip(nbformat.read(ROOT / "notebooks" / "student" / notebook.name, as_version=4))
    regenerate.execute(nb, smoke=True, timeout=900, cwd=tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for name in names:
        assert f"{name}: not written yet" in text
    assert text.count("The cells below use ditlab's") == len(names)
