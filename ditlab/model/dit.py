"""The Diffusion Transformer (paper §3.2, Fig. 3): patchify -> N DiT blocks -> decoder -> (ε, Σ) per pixel."""
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .blocks import BLOCK_CLASSES, FinalLayer
from .configs import DiTConfig, get_config
from .embed import LabelEmbedder, TimestepEmbedder
from .patchify import PatchEmbed, unpatchify
from .posemb import sincos_2d


class DiT(nn.Module):
    """`DiT(get_config("DiT-XL/2"))` or `DiT.from_name("DiT-S/4", input_size=16)`.

    forward(x, t, y): x (N, C, H, W) noisy input, t (N,) timesteps, y (N,) labels in [0, num_classes]
    (num_classes = the null label) -> (N, C_out, H, W) with C_out = 2C (ε and Σ's v) when learn_sigma.
    Module names follow the official checkpoints, so their state dicts load as they are.
    """

    def __init__(self, config: DiTConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = DiTConfig(**kwargs)
        elif kwargs:
            config = config.replace(**kwargs)
        if not isinstance(config, DiTConfig):
            raise TypeError(f"config must be a DiTConfig, got {type(config).__name__}")
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed(c.patch_size, c.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        self.y_embedder = LabelEmbedder(c.num_classes, D, c.class_dropout_prob)
        pos = sincos_2d(D, c.grid).unsqueeze(0)  # (1, T, D)
        if c.pos_embed == "learned":
            self.pos_embed = nn.Parameter(pos.clone().normal_(std=0.02))
        elif c.pos_embed == "sincos":
            self.register_buffer("pos_embed", pos)  # persistent: the released checkpoints store it
        else:
            self.pos_embed = None
        block, opts = BLOCK_CLASSES[c.block], c.block_options
        self.blocks = nn.ModuleList(block(D, c.num_heads, c.mlp_ratio, **opts) for _ in range(c.depth))
        self.final_layer = FinalLayer(D, c.patch_size, c.out_channels, adaptive=c.block.startswith("adaLN"),
                                      norm=c.norm)
        self.grad_checkpointing = False  # recompute block activations in backward: less memory, ~30% slower
        self.initialize_weights()

    @classmethod
    def from_name(cls, name: str, **overrides) -> "DiT":
        return cls(get_config(name, **overrides))

    def initialize_weights(self):
        """Paper §3.2 / App. A: xavier-uniform linears, zero biases, N(0, 0.02) embeddings,
        adaLN-Zero modulations and the final linear layer zero-initialised."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a linear layer on flattened patches
        nn.init.zeros_(self.x_embedder.proj.bias)
        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        zero = [self.final_layer.linear]
        if self.config.block == "adaLN-Zero":
            zero += [b.adaLN_modulation[-1] for b in self.blocks] + [self.final_layer.adaLN_modulation[-1]]
        for m in zero:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> None:
        """Shape checks (free) and, outside torch.compile, a label range check."""
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_channels or tuple(x.shape[-2:]) != c.hw:
            raise ValueError(f"x must have shape (N, {c.in_channels}, {c.hw[0]}, {c.hw[1]}) for this model "
                             f"(in_channels={c.in_channels}, input_size={c.input_size}), got {tuple(x.shape)}")
        if t.shape != x.shape[:1] or y.shape != x.shape[:1]:
            raise ValueError(f"t and y must have shape ({x.shape[0]},), got t {tuple(t.shape)}, y {tuple(y.shape)}")
        if not torch.compiler.is_compiling():
            top = c.num_classes if c.has_null_class else c.num_classes - 1
            if y.numel() and (int(y.min()) < 0 or int(y.max()) > top):
                raise ValueError(f"labels y must lie in [0, {top}] (num_classes={c.num_classes}"
                                 f"{', the last one is the null class' if c.has_null_class else ''}), "
                                 f"got min {int(y.min())} max {int(y.max())}")

    def _block(self, block: nn.Module, *args) -> torch.Tensor:
        if self.grad_checkpointing and self.training:
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor,
                force_drop_ids: torch.Tensor | None = None) -> torch.Tensor:
        self.check_inputs(x, t, y)
        c = self.config
        h = self.x_embedder(x)  # (N, T, D)
        if self.pos_embed is not None:
            h = h + self.pos_embed
        t_emb, y_emb = self.t_embedder(t), self.y_embedder(y, force_drop_ids)  # (N, D) each
        cond = t_emb + y_emb  # (N, D)
        if c.block == "in-context":  # append t and y as two extra tokens
            h = torch.cat([h, t_emb.unsqueeze(1), y_emb.unsqueeze(1)], dim=1)  # (N, T+2, D)
            for block in self.blocks:
                h = self._block(block, h)
            h = h[:, :-2]  # drop the conditioning tokens after the last block
        elif c.block == "cross-attention":
            cond_tokens = torch.stack([t_emb, y_emb], dim=1)  # (N, 2, D)
            for block in self.blocks:
                h = self._block(block, h, cond_tokens)
        else:
            for block in self.blocks:
                h = self._block(block, h, cond)
        h = self.final_layer(h, cond)  # (N, T, p*p*C_out)
        return unpatchify(h, c.patch_size, *c.grid)  # (N, C_out, H, W)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                         guidance_channels: int | None = None) -> torch.Tensor:
        """Classifier-free guidance (paper §3.1): ε̂ = ε(x, ∅) + s·(ε(x, y) − ε(x, ∅)).

        As in the official code, the batch holds the conditional half then the unconditional half
        (y = null label) with identical x; only the first half of x is used and both halves of the output
        carry the guided ε. `guidance_channels=None` guides all C noise channels (standard CFG);
        `guidance_channels=3` reproduces the official DiT, which guides only the first 3 of its 4 latent
        channels (the 4th stays per-half, the learned Σ is never guided).
        """
        if not self.config.has_null_class and cfg_scale != 1:
            raise ValueError("cfg_scale != 1 needs a null class: this model was built with class_dropout_prob=0")
        if x.shape[0] % 2:
            raise ValueError(f"forward_with_cfg needs an even batch (conditional + unconditional halves), got {x.shape[0]}")
        C = self.config.in_channels
        g = C if guidance_channels is None else guidance_channels
        if not 1 <= g <= self.config.out_channels:
            raise ValueError(f"guidance_channels must be None or in [1, {self.config.out_channels}], got {guidance_channels}")
        half = x[: x.shape[0] // 2]
        out = self.forward(torch.cat([half, half]), t, y)  # (2N, C_out, H, W)
        eps, rest = out[:, :g], out[:, g:]
        cond, uncond = eps.chunk(2)
        guided = uncond + cfg_scale * (cond - uncond)
        return torch.cat([torch.cat([guided, guided]), rest], dim=1)


def build_model(name: str | DiTConfig, **overrides) -> DiT:
    """A freshly initialised DiT from a config name such as "DiT-XL/2" (see `ditlab.model.config_names()`)."""
    return DiT(get_config(name, **overrides))
