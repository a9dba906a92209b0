"""Scoring samples: conditional accuracy and the Fréchet distance in the judge's feature space, standard
Inception FID (optional extra), and the ADM-style .npz export.

The paper reports FID-50K with Inception-V3 on ImageNet (§4, Table 4). On 32 px toy data the judge
(`judge.py`, a classifier trained on the dataset itself) answers two questions, fast and offline:
"is a sample of class y recognisable as y?" (conditional accuracy) and
"do the samples look like the data?" (Fréchet distance between Gaussians fit to judge features).
"""
import io
from pathlib import Path

import numpy as np
import torch

from ..checks import refuse
from ..extras import requires
from ..io import atomic_write, float_to_uint8, uint8_to_float
from .judge import check_images, check_labels

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


# ---------------------------------------------------------------------------------------------- metrics

def conditional_accuracy(judge, images, labels):
    """Share of images (N, C, H, W) in [-1, 1] that the judge puts in the class they were conditioned on."""
    x = check_images(judge, images)
    y = check_labels(judge, labels, len(x))
    return (judge.predict(x) == y).float().mean().item()


def gaussian_stats(feats):
    """features (N, D) -> (mean (D,), covariance (D, D)), float64."""
    x = torch.as_tensor(np.asarray(feats) if not isinstance(feats, torch.Tensor) else feats).double().cpu()
    refuse("", [(x.ndim != 2 or len(x) < 2, f"features must have shape (N, D) with N >= 2, got {tuple(x.shape)}")])
    refuse("", [(not torch.isfinite(x).all(), "features contain NaN or inf")])
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (len(x) - 1)  # unbiased covariance


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2):
    """FD between N(mu1, sigma1) and N(mu2, sigma2) = ||mu1 - mu2||² + Tr(Σ1 + Σ2 - 2 (Σ1 Σ2)^½).

    Tr (Σ1 Σ2)^½ = Σ sqrt(eigenvalues of Σ1^½ Σ2 Σ1^½): a symmetric PSD matrix, so `eigh` in float64 is
    stable (no complex parts, unlike a general matrix square root of the non-symmetric Σ1 Σ2).
    """
    mu1, mu2, s1, s2 = (torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t).double().cpu()
                        for t in (mu1, mu2, sigma1, sigma2))
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    refuse("", [(d < 1 or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d),
                 f"need mu (D,) and sigma (D, D) for both sets, got {tuple(mu1.shape)}, {tuple(sigma1.shape)}, "
                 f"{tuple(mu2.shape)}, {tuple(sigma2.shape)}")])
    ev, vecs = torch.linalg.eigh((s1 + s1.T) / 2)
    sqrt_s1 = vecs @ torch.diag(ev.clamp(min=0).sqrt()) @ vecs.T  # Σ1^½
    m = sqrt_s1 @ s2 @ sqrt_s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt
    return max(fd.item(), 0.0)  # >= 0 in exact arithmetic; clip rounding noise


def frechet_distance(feats_a, feats_b):
    """Fréchet distance between Gaussians fit to two feature sets (N1, D) and (N2, D)."""
    (mu1, s1), (mu2, s2) = gaussian_stats(feats_a), gaussian_stats(feats_b)
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dims differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


def feature_stats(judge, images):
    """(mean, covariance) of the judge features of images: compute once for the real data, reuse in judge_fd."""
    return gaussian_stats(judge.features(images))


def judge_fd(judge, samples, real):
    """FD in judge-feature space between samples and real images (or precomputed `feature_stats`)."""
    mu1, s1 = feature_stats(judge, samples)
    mu2, s2 = real if isinstance(real, tuple) else feature_stats(judge, check_images(judge, real, "real_images"))
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


def evaluate(judge, samples, labels, real_images=None):
    """-> dict(accuracy=conditional accuracy, fd=judge FD to real_images (None without them), n=#samples)."""
    x = check_images(judge, samples, "samples")
    y = check_labels(judge, labels, len(x))
    feats, logits = judge.embed(x)
    fd = None
    if real_images is not None:
        if len(x) < 2:
            raise ValueError("the Fréchet distance needs at least 2 samples")
        real = real_images if isinstance(real_images, tuple) else feature_stats(judge, check_images(
            judge, real_images, "real_images"))
        fd = frechet_distance_from_stats(*gaussian_stats(feats), *real)
    return dict(accuracy=(logits.argmax(1) == y).float().mean().item(), fd=fd, n=len(x))


# ---------------------------------------------------------------------------------------------- Inception FID, .npz

def _to_uint8_rgb(images, name):
    """float [-1, 1] or uint8 (N, C, H, W), C in {1, 3} -> uint8 (N, 3, H, W)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array (N, C, H, W), got {type(images).__name__}")
    refuse("", [(images.ndim != 4 or images.shape[1] not in (1, 3) or len(images) == 0,
                 f"{name} must have shape (N, C, H, W) with C in (1, 3) and N >= 1, got {tuple(images.shape)}")])
    if images.dtype != torch.uint8:
        if not images.is_floating_point():
            raise ValueError(f"{name} must be uint8 or float in [-1, 1], got dtype {images.dtype}")
        images = float_to_uint8(images.detach().cpu())
    return images.cpu().expand(-1, 3, -1, -1).contiguous()  # grayscale -> 3 equal channels


def inception_fid(samples, real, batch_size=64, device=None):
    """Standard FID (Inception-V3 pool features, 2048-d) via `torch-fidelity` (pip install 'ditlab[fid]').

    samples, real: float [-1, 1] or uint8 images (N, C, H, W); torch-fidelity resizes them to 299 px.
    """
    with requires("fid"):
        import torch_fidelity  # heavy optional dependency (the [fid] extra)
    a, b = _to_uint8_rgb(samples, "samples"), _to_uint8_rgb(real, "real")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("FID needs at least 2 images in each set (thousands for a meaningful value)")

    class _Images(torch.utils.data.Dataset):  # torch-fidelity reads datasets of uint8 (3, H, W) tensors
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    try:
        out = torch_fidelity.calculate_metrics(input1=_Images(a), input2=_Images(b), fid=True, cuda=cuda,
                                               batch_size=batch_size, verbose=False)
    except (OSError, RuntimeError) as e:  # urllib errors are OSErrors
        weights = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_URL.rsplit("/", 1)[1]
        if weights.exists():
            raise
        raise RuntimeError(f"torch-fidelity could not get its Inception weights ({e}). Offline? Download\n  "
                           f"{INCEPTION_URL}\ninto {weights.parent}/ (torch hub cache; set TORCH_HOME to move it)") from e
    return float(out["frechet_inception_distance"])


def save_npz_samples(path, images, labels=None):
    """Write samples as the ADM / guided-diffusion evaluator reads them: arr_0 uint8 (N, H, W, 3) [, arr_1 labels].

    images: float [-1, 1] or uint8 (N, C, H, W), C in {1, 3} (grayscale is repeated to 3 channels). Atomic.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"path must end with .npz, got {str(path)!r}")
    arrays = {"arr_0": _to_uint8_rgb(images, "images").permute(0, 2, 3, 1).numpy()}  # (N, H, W, 3)
    if labels is not None:
        labels = torch.as_tensor(labels)
        if labels.is_floating_point() or tuple(labels.shape) != (len(arrays["arr_0"]),):
            raise ValueError(f"labels must be integers of shape ({len(arrays['arr_0'])},), "
                             f"got {labels.dtype} {tuple(labels.shape)}")
        arrays["arr_1"] = labels.long().cpu().numpy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))


def load_npz_samples(path, channels=3):
    """Read an ADM-style .npz -> (float images (N, channels, H, W) in [-1, 1], labels (N,) or None)."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    with np.load(path, allow_pickle=False) as f:
        if "arr_0" not in f:
            raise ValueError(f"{path}: expected an array 'arr_0' (N, H, W, 3), found {sorted(f.keys())}")
        x, y = f["arr_0"], (f["arr_1"] if "arr_1" in f else None)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"{path}: arr_0 must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    x = torch.from_numpy(x).permute(0, 3, 1, 2)  # (N, 3, H, W)
    if channels == 1:  # ITU-R 601 luma; exact for gray images saved with 3 equal channels
        x = (x.double() * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)).sum(1, True)
        x = x.round().clamp(0, 255).to(torch.uint8)
    return uint8_to_float(x.contiguous()), (torch.from_numpy(y).long() if y is not None else None)
