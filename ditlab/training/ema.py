"""The exponential moving average of the weights that is sampled from (paper §4: decay 0.9999)."""
import torch

from ..model import DiT


class EMA:
    """Exponential moving average of the weights (paper §4: decay 0.9999), optionally warmed up."""

    def __init__(self, model: DiT, decay: float, warmup: bool):
        self.model = DiT(model.config).to(next(model.parameters()).device).eval().requires_grad_(False)
        self.model.load_state_dict(model.state_dict())
        self.decay, self.warmup = decay, warmup

    @torch.no_grad()
    def update(self, model: DiT, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay
        ema_p = list(self.model.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1 - d)
