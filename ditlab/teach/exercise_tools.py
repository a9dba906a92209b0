"""The toolkit of the exercise checks (`ditlab.teach.exercises`): the registry, `Wrong`, and the helpers every check uses
(expect a condition or raise a hint, call the student's function, fixed random probes, compare a student's block).
Hints never contain the expected value."""
import torch

EXERCISES: dict[str, tuple[str, object]] = {}  # name -> (notebook, check function)


class Wrong(AssertionError):
    """A wrong answer; the message is a hint, never the expected value."""


class Unanswered(Exception):
    pass


def exercise(notebook: str):
    def register(fn):
        EXERCISES[fn.__name__.removeprefix("_")] = (notebook, fn)
        return fn
    return register


def expect(ok: bool, hint: str):
    if not ok:
        raise Wrong(f"not quite: {hint}")


def call(fn, *args):
    """Call the student's function; None back means not answered yet."""
    out = fn(*args)
    if out is None:
        raise Unanswered
    return out


def randn(*shape, seed: int = 0) -> torch.Tensor:
    """A fixed probe that leaves the notebook's random state alone."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def close(a, b, rel: float = 0.01) -> bool:
    return abs(float(a) / float(b) - 1) < rel


def same_outputs(student_cls, ref_cls, *inputs, dim: int = 32, heads: int = 4):
    """Build the student's block and ditlab's `ref_cls` as (dim, heads), copy ditlab's perturbed weights into the
    student's, compare the outputs. The notebook's random state is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ref = ref_cls(dim, heads)
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.1 * torch.randn_like(p))  # no zero or unit weights that could hide a mistake
        mine = student_cls(dim, heads)
    if mine is None or not list(mine.parameters()):
        raise Unanswered
    try:
        missing, unexpected = mine.load_state_dict(ref.state_dict(), strict=False)
    except RuntimeError as e:  # a shape differs
        raise Wrong(f"not quite: ditlab's weights do not fit your block's shapes: {e}") from None
    expect(not missing and not unexpected, f"name the sub-modules like ditlab's block; missing {list(missing)}, "
                                            f"unexpected {list(unexpected)}")
    with torch.no_grad():
        out, want = mine.eval()(*inputs), ref.eval()(*inputs)
    if out is None:
        raise Unanswered
    expect(out.shape == want.shape, f"the output must have shape {tuple(want.shape)}, got {tuple(out.shape)}")
    expect(torch.allclose(out, want, atol=1e-5), "same weights, different outputs: check the order of the "
                                                  "sub-layers and where each LayerNorm and residual goes")
