"""The pieces of notebooks 02 and 03 (ditlab.teach.pieces_model): the 2D sin-cos table and the adaLN-Zero block. The
solution in the committed notebook passes (and is compared with the official code's output), its student blank is
"not written yet", each likely mistake — made by editing the notebook's own solution — gets its own hint, which
never shows the answer, and the fallback keeps the notebook's later cells working."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ditlab.io import fixture_path
from ditlab.model import AdaLNZeroBlock, sincos_2d
from ditlab.teach import pieces_model
from ditlab.teach.pieces import PIECES, RESULTS, grade
from ditlab.teach.student import blank

NB_DIR = Path(__file__).resolve().parents[1] / "notebooks"
SINCOS_NB, BLOCK_NB = "02_positional_embeddings.ipynb", "03_conditioning_and_blocks.ipynb"


def _code_cells(notebook: str) -> list[str]:
    cells = json.loads((NB_DIR / notebook).read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _cell(notebook: str, start: str) -> str:
    found = [s for s in _code_cells(notebook) if s.startswith(start)]
    assert len(found) == 1, f"{notebook}: {len(found)} code cells start with {start!r}"
    return found[0]


def _run(notebook: str, *cells: str, **names) -> dict:
    """A namespace holding the notebook's imports, `names`, then the given cell sources executed in it."""
    imports = next(s for s in _code_cells(notebook) if "from ditlab.teach.pieces import build_check" in s)
    ns = dict(names)
    exec(re.sub(r"^%.*$", "", imports, flags=re.MULTILINE), ns)  # noqa: S102  (the notebook's own code)
    for source in cells:
        exec(source, ns)  # noqa: S102
    return ns


def _edited(source: str, old: str, new: str) -> str:
    assert old in source, f"the notebook's solution no longer contains {old!r}"
    return source.replace(old, new)


# ---------------------------------------------------------------- 02 the 2D sin-cos table

SINCOS = _cell(SINCOS_NB, "def my_sincos_2d(dim, g):")


def _sincos(source=SINCOS):
    return _run(SINCOS_NB, source)["my_sincos_2d"]


def test_sincos_solution_passes_and_matches_the_official_table():
    outcome, message = grade("sincos_2d", _sincos())
    assert outcome == "correct", message
    assert RESULTS["sincos_2d"] == {"outcome": "correct", "official": True}


def test_sincos_student_blank_is_not_written_yet():
    assert "### BEGIN SOLUTION" in SINCOS
    assert grade("sincos_2d", _sincos(blank(SINCOS))) == ("blank", "sincos_2d: not written yet")


SINCOS_MISTAKES = [  # (old, new) in the solution, words of the hint
    (('indexing="ij"', 'indexing="xy"'), "numbered column by column"),
    (("[one_axis(cols), one_axis(rows)]", "[one_axis(rows), one_axis(cols)]"), "halves of the channels are swapped"),
    (("[np.sin(angles), np.cos(angles)]", "[np.cos(angles), np.sin(angles)]"), "sines and the cosines are swapped"),
    (("10000 **", "1000 **"), "check the frequency base"),
    (("/ (dim / 4))", "/ (dim / 2))"), "2× too slowly along the channels: check the exponent's denominator"),
    (("np.arange(dim // 4) /", "np.arange(1, dim // 4 + 1) /"), "where the channel index k starts"),
    (("return np.concatenate([one_axis(cols), one_axis(rows)], axis=1)",
      "return np.concatenate([one_axis(cols), one_axis(rows)], axis=1)[:, : dim // 2]"), "each coordinate gets half"),
]


@pytest.mark.parametrize("edit,words", SINCOS_MISTAKES, ids=[w for _, w in SINCOS_MISTAKES])
def test_sincos_mistakes_get_their_hint_without_the_answer(edit, words):
    outcome, message = grade("sincos_2d", _sincos(_edited(SINCOS, *edit)))
    assert outcome == "wrong" and words in message, message
    assert "10000" not in message and "dim / 4" not in message and "dim/4" not in message
    assert not re.search(r"\d\.\d{3}", message), message  # no numbers of the table


def test_sincos_combined_mistakes_are_all_named():
    source = _edited(_edited(SINCOS, 'indexing="ij"', 'indexing="xy"'), "10000 **", "1000 **")
    outcome, message = grade("sincos_2d", _sincos(source))
    assert outcome == "wrong" and "column by column" in message and "base" in message, message


def test_sincos_fallback_is_ditlabs_table_as_the_later_cells_use_it(reference):
    fallback = PIECES["sincos_2d"].fallback()
    table = fallback(64, 4)
    assert isinstance(table, np.ndarray) and table.shape == (16, 64)
    assert np.abs(table - reference["pos_embed_64_4"].numpy()).max() <= 1e-6
    shown = _cell(SINCOS_NB, "table_2d = torch.as_tensor(my_sincos_2d(")
    ns = _run(SINCOS_NB, shown.split("\nviz_embeddings")[0], my_sincos_2d=fallback, D=32, GRID=4)
    assert torch.equal(ns["table_2d"], sincos_2d(32, 4))
    assert grade("sincos_2d", fallback)[0] == "correct"


def test_sincos_without_the_official_fixture_says_so(monkeypatch):
    def absent():
        raise FileNotFoundError("no fixtures here")

    monkeypatch.setattr(pieces_model, "_reference", absent)
    outcome, message = grade("sincos_2d", _sincos())
    assert outcome == "correct" and "not here" in message, message
    assert RESULTS["sincos_2d"]["official"] is False


# ---------------------------------------------------------------- 03 the adaLN-Zero block

HELPERS = _cell(BLOCK_NB, "def modulate")
BLOCK = _cell(BLOCK_NB, "class MyAdaLNZeroBlock")


def _block(source=BLOCK, helpers=HELPERS):
    return _run(BLOCK_NB, helpers, source)["MyAdaLNZeroBlock"]


def test_block_solution_passes_and_reproduces_the_official_dit():
    outcome, message = grade("adaln_zero_block", _block())
    assert outcome == "correct", message
    assert RESULTS["adaln_zero_block"] == {"outcome": "correct", "official": True}


def test_block_student_blank_is_not_written_yet():
    assert BLOCK.count("### BEGIN SOLUTION") == 2  # the __init__ body and the forward body
    assert grade("adaln_zero_block", _block(blank(BLOCK))) == ("blank", "adaln_zero_block: not written yet")


CHUNKS = "shift1, scale1, gate1, shift2, scale2, gate2 = "
BLOCK_MISTAKES = [  # (old, new) in the block's solution (or in the helpers' modulate), words of the hint
    ((CHUNKS, "scale1, shift1, gate1, shift2, scale2, gate2 = "),
     "two of the six chunks are swapped: the ones you use as the attention's shift and as the attention's scale"),
    ((CHUNKS, "shift1, scale1, gate1, shift2, gate2, scale2 = "), "the MLP's scale and as the MLP's gate"),
    ((CHUNKS, "shift2, scale2, gate2, shift1, scale1, gate1 = "), "the attention's three chunks and the MLP's three"),
    ((CHUNKS, "gate1, shift1, scale1, shift2, scale2, gate2 = "), "3 of them are in the wrong place"),
    (("gate1[:, None] * self.attn", "self.attn"), "the attention's gate is missing"),
    (("elementwise_affine=False", "elementwise_affine=True"), "your LayerNorms have a learned scale and shift"),
    ((", eps=1e-6", ""), "eps differs"),
    (("self.adaLN_modulation", "self.modulation"), "missing ['adaLN_modulation.1.bias', 'adaLN_modulation.1.weight']"),
    (("nn.init.zeros_(self.adaLN_modulation[-1].bias)", "pass"), "zero-initialise the regression's last layer"),
    (("int(dim * mlp_ratio)", "int(dim * 2)"), "some weights have other shapes: mlp.fc1.weight"),
]


@pytest.mark.parametrize("edit,words", BLOCK_MISTAKES, ids=[e[1] for e, _ in BLOCK_MISTAKES])
def test_block_mistakes_get_their_hint_without_the_answer(edit, words):
    outcome, message = grade("adaln_zero_block", _block(_edited(BLOCK, *edit)))
    assert outcome == "wrong", message
    assert words in message, message
    assert "1e-6" not in message and "1 + scale" not in message and CHUNKS.strip(" =") not in message


def test_block_without_both_gates_or_with_scale_instead_of_one_plus_scale():
    source = _edited(_edited(BLOCK, "gate1[:, None] * self.attn", "self.attn"), "gate2[:, None] * self.mlp", "self.mlp")
    assert "the gates are missing" in grade("adaln_zero_block", _block(source))[1]
    helpers = _edited(HELPERS, "x * (1 + scale[:, None])", "x * scale[:, None]")
    outcome, message = grade("adaln_zero_block", _block(helpers=helpers))
    assert outcome == "wrong" and "multiplies by the scale itself" in message, message


def test_parameter_free_norms_may_have_other_names():
    source = _edited(_edited(BLOCK, "self.norm1 = nn", "self.ln1 = nn"), "self.norm1(x)", "self.ln1(x)")
    assert grade("adaln_zero_block", _block(source))[0] == "correct"


def test_the_diagnosis_reproduces_ditlabs_block():
    ref = AdaLNZeroBlock(32, 4)
    for p in ref.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x, c = torch.randn(2, 6, 32), torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(pieces_model.adaln_zero_forward(ref, x, c), ref(x, c), atol=1e-6)


def test_block_fallback_is_ditlabs_and_the_adaln_variation_still_builds_on_it():
    fallback = PIECES["adaln_zero_block"].fallback()
    assert fallback is AdaLNZeroBlock and grade("adaln_zero_block", fallback)[0] == "correct"
    shown = _cell(BLOCK_NB, "cfg_small = get_config(SMALL)")
    variation = _cell(BLOCK_NB, "class MyAdaLNBlock(MyAdaLNZeroBlock)")
    ns = _run(BLOCK_NB, HELPERS, shown, variation, MyAdaLNZeroBlock=fallback, SMALL="DiT-Mi/4", BATCH=2)
    assert ns["diff"] < 1e-5 and isinstance(ns["mine"], AdaLNZeroBlock)


def test_block_without_the_official_fixture_says_so(monkeypatch):
    def absent():
        raise FileNotFoundError("no fixtures here")

    monkeypatch.setattr(pieces_model, "_official_model", absent)
    outcome, message = grade("adaln_zero_block", _block())
    assert outcome == "correct" and "official" not in message, message
    assert RESULTS["adaln_zero_block"]["official"] is False


def test_the_fixtures_the_checks_read_ship_with_the_package():
    for name in ("reference.safetensors", "DiT-tiny-release.pt", "config.json"):
        assert fixture_path(f"official_dit/{name}").is_file()
