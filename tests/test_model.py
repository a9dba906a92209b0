"""The DiT pieces: patchify, embeddings, the four block designs, initialisation, configs and bad input."""
import pytest
import torch

from ditlab import DiT, DiTConfig, config_names, get_config, patchify, sincos_2d, unpatchify
from ditlab.model import BLOCKS, AdaLNZeroBlock, LabelEmbedder, PatchEmbed, sincos_1d, timestep_embedding

SMALL = dict(input_size=16, patch_size=4, in_channels=3, hidden_size=32, depth=2, num_heads=4, num_classes=5)


@pytest.mark.parametrize("p", [1, 2, 4, 8])
@pytest.mark.parametrize("hw", [(16, 16), (8, 24)])
def test_patchify_roundtrip_and_layout(p, hw):
    x = torch.randn(2, 3, *hw)
    tokens = patchify(x, p)
    assert tokens.shape == (2, (hw[0] // p) * (hw[1] // p), p * p * 3)
    assert torch.equal(unpatchify(tokens, p, hw[0] // p, hw[1] // p), x)
    # token 1 is the patch right of token 0, flattened as (row, col, channel)
    if hw[1] // p > 1:
        assert torch.equal(tokens[:, 1], x[:, :, :p, p:2 * p].permute(0, 2, 3, 1).reshape(2, -1))


@pytest.mark.parametrize("p", [1, 2, 8])
def test_patch_embed_is_a_linear_projection_of_patches(p):
    embed = PatchEmbed(p, 3, 16)
    x = torch.randn(2, 3, 16, 24)
    w, b = embed.as_linear()
    torch.testing.assert_close(embed(x), patchify(x, p) @ w.T + b, atol=1e-5, rtol=1e-5)


def test_patchify_rejects_indivisible_size():
    with pytest.raises(ValueError, match="not divisible by patch_size=4"):
        patchify(torch.zeros(1, 1, 10, 12), 4)


def test_sincos_2d_structure_and_rectangles():
    emb = sincos_2d(32, (3, 5))
    assert emb.shape == (15, 32)
    # first half encodes the column, second half the row (MAE layout), 1D embeddings of each
    cols, rows = torch.arange(15) % 5, torch.arange(15) // 5
    torch.testing.assert_close(emb[:, :16], torch.from_numpy(sincos_1d(16, cols.numpy())).float())
    torch.testing.assert_close(emb[:, 16:], torch.from_numpy(sincos_1d(16, rows.numpy())).float())
    assert torch.equal(sincos_2d(32, 4), sincos_2d(32, (4, 4)))


@pytest.mark.parametrize("dim", [0, 6, 30])
def test_sincos_rejects_bad_dims(dim):
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(dim, 4)


def test_timestep_embedding_values_and_odd_dim():
    e = timestep_embedding(torch.tensor([0.0, 3.0]), 7)
    assert e.shape == (2, 7) and torch.all(e[:, -1] == 0)
    assert torch.allclose(e[0, :3], torch.ones(3)) and torch.allclose(e[0, 3:6], torch.zeros(3))
    assert torch.isclose(e[1, 0], torch.cos(torch.tensor(3.0)))
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(torch.tensor([1.0]), 1)


def test_label_dropout_uses_null_class():
    emb = LabelEmbedder(10, 8, dropout_prob=0.5).train()
    y = torch.zeros(4000, dtype=torch.long)
    out = emb(y)
    dropped = (out == emb.embedding_table.weight[10]).all(dim=1).float().mean()
    assert 0.45 < dropped < 0.55
    emb.eval()
    assert torch.equal(emb(y), emb.embedding_table.weight[y])
    forced = emb(torch.tensor([1, 2]), force_drop_ids=torch.tensor([1, 0]))
    assert torch.equal(forced[0], emb.embedding_table.weight[10])
    assert LabelEmbedder(10, 8, 0.0).embedding_table.num_embeddings == 10


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("learn_sigma", [True, False])
def test_every_block_design_runs_and_learns(block, learn_sigma):
    model = DiT(DiTConfig(**SMALL, block=block, learn_sigma=learn_sigma))
    x, t, y = torch.randn(3, 3, 16, 16), torch.tensor([0, 500, 999]), torch.tensor([0, 4, 5])
    out = model(x, t, y)
    assert out.shape == (3, 6 if learn_sigma else 3, 16, 16)
    # one optimizer step moves the output: gradients reach the model through every design
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x, t, y).square().mean().add(out.sum() * 0).backward()
    (model(x, t, y) - 1).square().mean().backward()
    opt.step()
    assert not torch.allclose(model(x, t, y), out)


def test_in_context_conditioning_changes_output_through_tokens():
    model = DiT(DiTConfig(**SMALL, block="in-context"))
    torch.nn.init.normal_(model.final_layer.linear.weight)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 10])
    assert not torch.allclose(model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([1, 1])))


def test_adaln_zero_block_is_identity_at_init():
    block = AdaLNZeroBlock(32, 4)
    x, c = torch.randn(2, 9, 32), torch.randn(2, 32)
    assert torch.equal(block(x, c), x)
    model = DiT(DiTConfig(**SMALL))
    assert torch.count_nonzero(model(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), torch.tensor([0, 1]))) == 0


def test_rectangular_inputs_and_learned_pos_embed():
    model = DiT(DiTConfig(**{**SMALL, "input_size": (8, 16)}, pos_embed="learned"))
    assert isinstance(model.pos_embed, torch.nn.Parameter) and model.pos_embed.shape == (1, 8, 32)
    assert model(torch.randn(2, 3, 8, 16), torch.tensor([1, 2]), torch.tensor([0, 1])).shape == (2, 6, 8, 16)


def test_paper_configs():
    assert len(config_names(paper_only=True)) == 12
    c = get_config("DiT-XL/2")
    assert (c.depth, c.hidden_size, c.num_heads, c.patch_size, c.num_tokens) == (28, 1152, 16, 2, 256)
    assert (get_config("DiT-S/8").depth, get_config("DiT-B/4").hidden_size, get_config("DiT-L/2").num_heads) == (12, 768, 16)
    assert get_config("DiT-Mi/4").in_channels == 1


@pytest.mark.parametrize("kwargs,match", [
    (dict(input_size=30, patch_size=4), "divisible by patch_size"),
    (dict(hidden_size=36, num_heads=5), "not divisible by num_heads"),
    (dict(hidden_size=30, num_heads=3), "divisible by 4"),
    (dict(block="adaLN-One"), "block must be one of"),
    (dict(pos_embed="rope"), "pos_embed must be one of"),
    (dict(in_channels=0), "in_channels must be a positive int"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DiTConfig(**{**SMALL, **kwargs})


def test_unknown_config_name_lists_valid_ones():
    with pytest.raises(ValueError, match=r"DiT-XL/2"):
        get_config("DiT-XXL/2")


def test_forward_input_errors():
    model = DiT(DiTConfig(**SMALL))
    t, y = torch.tensor([1, 2]), torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"shape \(N, 3, 16, 16\)"):
        model(torch.randn(2, 1, 16, 16), t, y)
    with pytest.raises(ValueError, match=r"shape \(N, 3, 16, 16\)"):
        model(torch.randn(2, 3, 8, 8), t, y)
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 5\]"):
        model(torch.randn(2, 3, 16, 16), t, torch.tensor([0, 6]))
    with pytest.raises(ValueError, match=r"labels y must lie"):
        model(torch.randn(2, 3, 16, 16), t, torch.tensor([-1, 0]))
    no_null = DiT(DiTConfig(**SMALL, class_dropout_prob=0.0))
    with pytest.raises(ValueError, match=r"\[0, 4\]"):
        no_null(torch.randn(2, 3, 16, 16), t, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="needs a null class"):
        no_null.forward_with_cfg(torch.randn(2, 3, 16, 16), t, torch.tensor([0, 1]), cfg_scale=4.0)


def test_model_compiles_without_graph_breaks():
    model = DiT(DiTConfig(**SMALL))
    explanation = torch._dynamo.explain(model)(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), torch.tensor([0, 1]))
    assert explanation.graph_break_count == 0
