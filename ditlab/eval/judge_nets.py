"""The judge's two bodies and their training recipes: a small CNN for grayscale digits, a small ResNet for RGB.

    cnn     strided stem, two conv stages, 1024 -> 128 features; AdamW, one-cycle lr, no augmentation. Trains in
            well under a minute on a CPU to >= 98 % test accuracy on MNIST / the built-in digits.
    resnet  conv stem, three residual stages (conv, max-pool, BN, GELU, conv, BN, GELU, + skip) of widths
            64-128-256, global max-pool, 256 -> 128 features; SGD-nesterov, one-cycle lr, label smoothing,
            random-translate + flip augmentation, flip test-time averaging. Natural images (CIFAR-10) need it:
            the cnn recognised only about 66 % of CIFAR-10's test images (issue #25); 800 steps of this one, 87.2 %.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

RECIPES = {  # the default training recipe of each body (get_judge: unset steps / batch_size come from here)
    "cnn": dict(steps=400, batch_size=128, lr=3e-3, width=32),
    "resnet": dict(steps=800, batch_size=512, lr=0.15, width=64),
}
SHIFT = 2  # augmentation: random translation by up to this many pixels (reflect padding), and a random flip


def default_arch(channels: int) -> str:
    """The body for images of `channels`: the small CNN for grayscale, the ResNet for RGB."""
    return "resnet" if channels == 3 else "cnn"


def _conv(c_in, c_out, k=3, stride=1):
    return nn.Conv2d(c_in, c_out, k, stride, padding=1, bias=False)


def cnn_body(channels, width=32, feat_dim=128):
    """(N, C, H, W) -> (N, feat_dim): 32 px -> 16 -> 8 -> 4, then 1024 -> 128."""
    def block(c_in, c_out, k=3, stride=1):
        return [_conv(c_in, c_out, k, stride), nn.BatchNorm2d(c_out), nn.GELU()]

    return nn.Sequential(
        *block(channels, width, k=4, stride=2),            # (N, w, H/2, W/2): strided stem, cheap on a CPU
        *block(width, width), nn.MaxPool2d(2),             # (N, w, H/4, W/4)
        *block(width, 2 * width), nn.MaxPool2d(2),         # (N, 2w, H/8, W/8)
        nn.AdaptiveAvgPool2d(4), nn.Flatten(),             # (N, 32w)
        nn.Linear(32 * width, feat_dim), nn.GELU())        # (N, feat_dim): the features used for the FD


class ResStage(nn.Module):
    """conv -> max-pool 2 -> BN -> GELU, then a residual conv -> BN -> GELU: (N, c_in, H, W) -> (N, c_out, H/2, W/2)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.down = nn.Sequential(_conv(c_in, c_out), nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.GELU())
        self.res = nn.Sequential(_conv(c_out, c_out), nn.BatchNorm2d(c_out), nn.GELU())

    def forward(self, x):
        x = self.down(x)
        return x + self.res(x)


def resnet_body(channels, width=64, feat_dim=128):
    """(N, C, H, W) -> (N, feat_dim): stem at full size, stages of width w, 2w, 4w halving the size, global max-pool."""
    w = width
    return nn.Sequential(
        _conv(channels, w // 2), nn.BatchNorm2d(w // 2), nn.GELU(),   # (N, w/2, H, W)
        ResStage(w // 2, w), ResStage(w, 2 * w), ResStage(2 * w, 4 * w),  # (N, 4w, H/8, W/8)
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),                          # (N, 4w)
        nn.Linear(4 * w, feat_dim), nn.GELU())                          # (N, feat_dim): the features used for the FD


def make_body(arch, channels, width, feat_dim):
    return {"cnn": cnn_body, "resnet": resnet_body}[arch](channels, width, feat_dim)


def augment(x, generator):
    """Random translation by up to SHIFT px (reflect padding) and a random horizontal flip, per image: (N, C, H, W)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (SHIFT,) * 4, mode="reflect")  # (N, C, H + 2s, W + 2s)
    dy, dx = (torch.randint(0, 2 * SHIFT + 1, (2, n), generator=generator)).tolist()
    flip = (torch.rand(n, generator=generator) < 0.5).tolist()
    out = torch.empty_like(x)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def make_optimizer(arch, params, lr, steps):
    """(optimizer, one-cycle lr scheduler, label smoothing) of the body's recipe."""
    if arch == "resnet":
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        smoothing, warm = 0.2, 0.25
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
        smoothing, warm = 0.0, 0.2
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=warm,
                                                anneal_strategy="linear" if arch == "resnet" else "cos")
    return opt, sched, smoothing
