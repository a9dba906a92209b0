"""The model is torch.compile-friendly: every block design compiles as one graph (fullgraph=True raises on any
graph break), forward and guided forward, and the compiled model computes what the eager one does."""
import pytest
import torch

from ditlab import build_model
from ditlab.model import BLOCKS


@pytest.mark.parametrize("block", list(BLOCKS))
def test_whole_model_compiles_without_graph_breaks(block):
    torch.compiler.reset()
    torch.manual_seed(0)
    model = build_model("DiT-Pico/4", block=block, input_size=8, depth=2).eval()
    for p in model.parameters():  # the paper's zero-init would make the output trivially 0
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(2, 1, 8, 8), torch.tensor([3, 700]), torch.tensor([1, 9])
    # aot_eager traces forward and backward graphs like Inductor does, without compiling C++ (fast on a CPU)
    fwd = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=False)
    cfg = torch.compile(model.forward_with_cfg, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(fwd(x, t, y), model(x, t, y), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(cfg(x, t, y, 4.0), model.forward_with_cfg(x, t, y, 4.0), rtol=1e-5, atol=1e-6)
    fwd(x, t, y).square().mean().backward()  # the training graph (backward) too
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
