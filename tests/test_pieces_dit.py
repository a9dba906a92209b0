"""The piece of notebook 04, the whole DiT (`ditlab.teach.pieces_dit`): the notebook's own solution passes (the
official release's weights, strictly, and the official code's output), its blank reads "not written yet", each
typical mistake gets its own hint (never the expected values), and the fallback works where the later cells use it."""
import json
import re

import pytest
import torch
from conftest import ROOT, load_script

from ditlab.eval import count_params
from ditlab.io import fixture_path
from ditlab.model import DiT
from ditlab.teach import pieces_dit
from ditlab.teach.pieces import PIECES, RESULTS, grade
from ditlab.teach.student import blank

NOTEBOOK = ROOT / "notebooks" / "04_build_the_model.ipynb"


def _code_cells():
    return ["".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"] if c["cell_type"] == "code"]


def _piece_source() -> str:
    (src,) = [s for s in _code_cells() if s.startswith("class MyDiT(")]
    return src


@pytest.fixture(scope="module")
def namespace():
    """The notebook's imports and the student's earlier pieces (the cells before MyDiT's), executed."""
    ns = {}
    for src in _code_cells():
        if src.startswith("class MyDiT("):
            return ns
        if "import" in src and "google.colab" not in src or src.startswith(("def my_sincos_2d", "class MyPatchEmbed")):
            exec(re.sub(r"^[%!].*$", "", src, flags=re.MULTILINE), ns)
    raise AssertionError("no MyDiT cell in notebook 04")


def _mydit(namespace, source):
    ns = dict(namespace)
    exec(source, ns)
    return ns["MyDiT"]


def _mistake(namespace, old, new):
    src = _piece_source()
    assert old in src, f"the solution no longer holds {old!r}"
    return _mydit(namespace, src.replace(old, new))


def test_the_notebooks_solution_passes_and_runs_the_official_comparison(namespace):
    outcome, message = grade("dit", _mydit(namespace, _piece_source()))
    assert outcome == "correct", message
    assert RESULTS["dit"] == {"outcome": "correct", "official": True}
    assert "official code's output" in message


def test_the_blank_is_not_written_yet(namespace):
    student = blank(_piece_source())
    assert "### BEGIN SOLUTION" not in student and student.count("raise NotImplementedError") == 2
    generated = json.loads((NOTEBOOK.parent / "student" / NOTEBOOK.name).read_text())["cells"]
    assert student in ["".join(c["source"]) for c in generated], "regenerate notebooks/student/: python " \
                                                                   "notebooks/regenerate.py 04"
    assert grade("dit", _mydit(namespace, student)) == ("blank", "dit: not written yet")
    head = _piece_source().split("    def forward")[0]
    init_only = head + "    def forward(self, x, t, y):\n        raise NotImplementedError"
    assert grade("dit", _mydit(namespace, init_only))[0] == "blank"  # __init__ written, forward not yet
    assert grade("dit", None)[0] == "blank"


POS = 'self.register_buffer("pos_embed", pos)'
COND = "c = self.t_embedder(t) + self.y_embedder(y)"
MISTAKES = [  # (old, new, a piece of the hint)
    (POS, "self.pos_embed = nn.Parameter(pos)", "trainable parameter"),
    (POS, "self.pos_embed = pos", "persistent"),
    (POS, 'self.register_buffer("pos_embed", pos, persistent=False)', "persistent"),
    (").float()[None]", ")[None]", "float64"),
    ("[None]\n", "\n", "(1, T, D)"),
    (POS, 'self.register_buffer("pos_embed", torch.zeros_like(pos))', "sin-cos table's values"),
    ("self.x_embedder = ", "self.patch_embed = ",
     "missing x_embedder.proj.bias, x_embedder.proj.weight; unexpected patch_embed.proj.bias, patch_embed.proj.weight"),
    ("2 * in_channels if learn_sigma else in_channels", "in_channels", "2C (ε and Σ) when learn_sigma"),
    ("2 * in_channels if learn_sigma else in_channels", "2 * in_channels", "else C"),
    ("MyAdaLNZeroBlock(hidden_size, num_heads, mlp_ratio)", "MyAdaLNZeroBlock(hidden_size, num_heads)",
     "mlp_ratio · hidden_size"),
    (COND, "c = self.t_embedder(t)", "misses the class label"),
    (COND, "c = self.y_embedder(y)", "misses the timestep"),
    ("h = self.x_embedder(x) + self.pos_embed", "h = self.x_embedder(x)", "no positions"),
    ("            h = block(h, c)", "            block(h, c)", "keep each block's output"),
    ("return my_unpatchify(h, self.patch_size, self.grid, self.grid)", "return h", "unpatchify them back"),
    ("return my_unpatchify(h, self.patch_size, self.grid, self.grid)",
     "return my_unpatchify(h, self.patch_size, self.grid, self.grid).transpose(-1, -2)", "transposed"),
    ("return my_unpatchify(h, self.patch_size, self.grid, self.grid)",
     'return rearrange(h, "n (h w) (c p q) -> n c (h p) (w q)", h=self.grid, w=self.grid, p=self.patch_size, '
     'q=self.patch_size)', "channel-first"),
    ("return my_unpatchify(h, self.patch_size, self.grid, self.grid)",
     'return rearrange(h, "n (w h) (p q c) -> n c (h p) (w q)", h=self.grid, w=self.grid, p=self.patch_size, '
     'q=self.patch_size)', "row by row"),
]


@pytest.mark.parametrize("old, new, hint", MISTAKES, ids=[m[2][:24] for m in MISTAKES])
def test_each_mistake_gets_its_hint_without_the_expected_values(namespace, old, new, hint):
    outcome, message = grade("dit", _mistake(namespace, old, new))
    assert outcome == "wrong" and hint in message, message
    assert "tensor(" not in message and len(message) < 400, message


def test_a_mistake_beyond_the_list_still_says_what_differs(namespace):
    outcome, message = grade("dit", _mistake(namespace, "h = self.final_layer(h, c)", "h = self.final_layer(h, -c)"))
    assert outcome == "wrong" and "the output differs" in message and "max difference" in message, message


def test_an_instance_instead_of_the_class(namespace):
    outcome, message = grade("dit", _mydit(namespace, _piece_source())(input_size=8, hidden_size=64, depth=1,
                                                                         num_heads=4, num_classes=10))
    assert outcome == "wrong" and "the class MyDiT itself" in message


def test_without_the_fixtures_it_compares_with_ditlab(namespace, monkeypatch):
    monkeypatch.setattr(pieces_dit, "_official", lambda: None)
    outcome, message = grade("dit", _mydit(namespace, _piece_source()))
    assert outcome == "correct" and "did not run" in message, message
    assert RESULTS["dit"] == {"outcome": "correct", "official": False}
    assert grade("dit", _mistake(namespace, COND, "c = self.t_embedder(t)"))[0] == "wrong"


def test_the_fallback_is_call_compatible_with_the_later_cells():
    """Section 3 (build from keywords), 4 (the init recipe reads these modules), 5 (the release, strictly; the
    official output; forward_with_cfg's null labels), exercise 2 (meta device, DiT-XL/2's parameter count)."""
    Fallback = PIECES["dit"].fallback()
    assert grade("dit", Fallback)[0] == "correct"
    config = json.loads(fixture_path("official_dit/config.json").read_text())
    model = Fallback(**config).eval()
    state = torch.load(fixture_path("official_dit/DiT-tiny-release.pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    ref = pieces_dit._official()[2]
    with torch.no_grad():
        assert torch.allclose(model(ref["x"], ref["t"], ref["y"]), ref["out"], atol=1e-5)
        assert model(ref["cfg_x"], ref["cfg_t"], ref["cfg_y"]).shape == ref["cfg_out"].shape  # with null labels
    _ = (model.x_embedder.proj.weight, model.t_embedder.mlp[2], model.y_embedder.embedding_table,
         model.final_layer.adaLN_modulation[-1], model.final_layer.linear, model.blocks[0].adaLN_modulation[-1])
    small = Fallback(input_size=16, patch_size=4, in_channels=1, hidden_size=64, depth=2, num_heads=4, num_classes=10)
    assert [n for n, _ in small.named_parameters()] == [n for n, _ in DiT(small.config).named_parameters()]
    with torch.device("meta"):
        xl2 = Fallback(depth=28, hidden_size=1152, num_heads=16, patch_size=2, input_size=32)
    assert sum(p.numel() for p in xl2.parameters()) == count_params("DiT-XL/2")


def test_the_notebook_says_what_runs_and_claims_only_what_ran():
    cells = _code_cells()
    i = next(i for i, s in enumerate(cells) if s.startswith("class MyDiT("))
    assert cells[i + 1] == 'MyDiT = build_check("dit", MyDiT)'
    assert 'RESULTS["dit"]["outcome"] == "correct"' in cells[i + 2] and "MyDiT(**tiny)" in cells[i + 2]
    official = next(s for s in cells if "DiT-tiny-release.pt" in s)
    assert "\"You just built the paper's model.\" if yours else" in official


@pytest.mark.slow
def test_the_student_notebook_runs_with_the_blank_and_goes_on_with_ditlabs(tmp_path):
    """The generated student version, in smoke mode from a folder outside the repository: the check reads "not
    written yet", the later cells (the official comparison, CFG, the parameter count) run on the fallback."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    regenerate = load_script(ROOT / "notebooks" / "regenerate.py")
    nb = regenerate.strip(nbformat.read(ROOT / "notebooks" / "student" / NOTEBOOK.name, as_version=4))
    regenerate.execute(nb, smoke=True, timeout=900, cwd=tmp_path)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "dit: not written yet" in text and "The cells below use ditlab's DiT" in text
    assert "Write MyDiT above to build it yourself." in text and "You just built" not in text
