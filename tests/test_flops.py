"""Gflops and params reproduce the paper's Table 4 (ditlab/eval/paper_table4.csv)."""
import pytest

from ditlab.cli import main
from ditlab.eval import (FLOPS_PARTS, count_flops, count_params, estimate_flops, estimate_params, flops_breakdown,
                         flops_table, paper_table)
from ditlab.model import get_config

ROWS = paper_table()


def _id(r):
    return f"{r['model']}-{r['block']}-{r['image_size']}"


def test_packaged_table_is_the_fixture():
    assert [(r["model"], r["block"], r["gflops"]) for r in paper_table()] == \
        [(r["model"], r["block"], r["gflops"]) for r in ROWS]
    assert len(ROWS) == 16


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_closed_form_matches_paper(row):
    c = row["config"]
    assert estimate_flops(c) / 1e9 == pytest.approx(row["gflops"], rel=0.005)
    assert estimate_params(c) / 1e6 == pytest.approx(row["params_m"], rel=0.01)


@pytest.mark.parametrize("row", [r for r in ROWS if r["gflops"] < 6], ids=_id)
def test_fvcore_counter_matches_paper_small_rows(row):
    assert count_flops(row["config"]) / 1e9 == pytest.approx(row["gflops"], rel=0.005)


@pytest.mark.parametrize("block", ["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
@pytest.mark.parametrize("size", [("DiT-XL/2", 32), ("DiT-S/4", 16), ("DiT-Mi/2", (8, 16))])
def test_closed_form_equals_fvcore_and_real_params(block, size):
    """The closed form counts exactly what fvcore counts on a real forward pass (depth cut to 2 for speed)."""
    c = get_config(size[0], block=block, input_size=size[1], depth=2)
    assert estimate_flops(c) == count_flops(c)
    assert estimate_params(c) == count_params(c)


def _fvcore_by_part(c) -> dict:
    """fvcore's per-module counts of a real forward pass, grouped like `flops_breakdown`."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    from ditlab.eval.flops import _sdpa_flop
    from ditlab.model import DiT

    args = (torch.zeros(1, c.in_channels, *c.hw), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))
    analysis = FlopCountAnalysis(DiT(c).eval(), args).set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop)
    by = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_module()
    leaf = lambda *names: sum(v for k, v in by.items() if k.startswith(("blocks.", "final_layer."))  # noqa: E731
                              and k.rsplit(".", 1)[-1] in names)
    proj = leaf("qkv", "proj", "q", "kv")
    return {"patch embedding": by["x_embedder"], "timestep embedding": by["t_embedder"],
            "attention projections": proj, "attention scores": leaf("attn", "cross_attn") - proj,
            "MLP": leaf("mlp"), "adaLN": leaf("adaLN_modulation"),
            "LayerNorm": leaf("norm1", "norm2", "norm3", "norm_final"), "final layer": by["final_layer.linear"]}


@pytest.mark.parametrize("block", ["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
def test_breakdown_matches_fvcore_per_component(block):
    c = get_config("DiT-Mi/4", block=block, depth=2)
    parts = flops_breakdown(c)
    assert list(parts) == list(FLOPS_PARTS)
    assert sum(parts.values()) == estimate_flops(c)
    assert parts == _fvcore_by_part(c)


def test_breakdown_halving_p_quadruples_the_per_token_parts():
    a, b = flops_breakdown("DiT-XL/4"), flops_breakdown("DiT-XL/2")
    for part in ("attention projections", "MLP", "LayerNorm"):
        assert b[part] == 4 * a[part]
    assert b["attention scores"] == 16 * a["attention scores"]
    assert b["adaLN"] == a["adaLN"] and b["timestep embedding"] == a["timestep embedding"]  # once per image


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_fvcore_counter_matches_paper_all_rows(row):
    assert count_flops(row["config"]) / 1e9 == pytest.approx(row["gflops"], rel=0.005)
    assert count_params(row["config"]) / 1e6 == pytest.approx(row["params_m"], rel=0.01)


def test_sdpa_handle_matters():
    """Without the attention handle fvcore would miss 2·T²·D per block (XL/2: 118.6 → ~114.5 Gflops)."""
    c = get_config("DiT-XL/2", depth=1)
    missing = 2 * 256 * 256 * 1152
    full = estimate_flops(get_config("DiT-XL/2"))
    assert (full - 28 * missing) / 1e9 == pytest.approx(114.5, abs=0.1)
    assert count_flops(c) == estimate_flops(c)


def test_flops_table_and_cli(capsys):
    rows = flops_table()
    assert all(abs(r["gflops"] / r["paper_gflops"] - 1) < 0.005 for r in rows)
    main(["flops"])
    out = capsys.readouterr().out
    assert "DiT-XL/2" in out and "118.6" in out and "cross-attention" in out and "524.6" in out
    with pytest.raises(ValueError, match="method"):
        flops_table("guess")
