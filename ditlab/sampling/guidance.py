"""Classifier-free guidance (paper §3.1), the one helper every sampler calls the network through."""
import torch

from .settings import Guidance


class Guided:
    """The network as the samplers call it, `guided(x, t) -> output`. Guided (scale != 1), the batch is doubled:
    x = [z; z] with labels [y; ∅] (both halves share the noise), and `model.forward_with_cfg` mixes them; outside
    `guidance.interval` (flow models) only the conditional half is evaluated. Counts network evaluations."""

    def __init__(self, model, y: torch.Tensor, guidance: Guidance):
        self.model, self.guidance, self.n, self.nfe = model, guidance, len(y), 0
        self.guided = guidance.scale != 1
        self.y = torch.cat([y, torch.full_like(y, model.config.num_classes)]) if self.guided else y  # (2N,) or (N,)

    def batch(self, z: torch.Tensor) -> torch.Tensor:
        """The network's input batch for noise z (N, C, H, W): (2N, C, H, W) when guided."""
        return torch.cat([z, z]) if self.guided else z

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        g, n = self.guidance, self.n
        if not self.guided:
            return self.model(x, t, self.y)
        if g.interval is not None and not g.interval[0] <= float(t[0]) <= g.interval[1]:
            out = self.model(x[:n], t[:n], self.y[:n])  # conditional only, half the cost
            return torch.cat([out, out])
        return self.model.forward_with_cfg(x, t, self.y, g.scale, guidance_channels=g.channels)
