"""Class labels for sampling: ids or class names -> a (N,) long tensor, at most `MAX_IMAGES` per call."""
import numbers

import numpy as np
import torch

from ..checks import integer, of_type
from ..data.imagenet import imagenet_names

MAX_IMAGES = 10_000  # per call: the images come back as one CPU tensor (and the CLI writes them as one grid)


def classes_of(model) -> list | None:
    """Class names stored with the model; ImageNet's for 1000-class models (the released DiTs)."""
    names = getattr(model, "classes", None)
    if names is None and model.config.num_classes == 1000:
        names = imagenet_names()
    return names


def _label_list(labels) -> list:
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, np.ndarray):
        if not np.issubdtype(labels.dtype, np.integer):  # floats and booleans are not class ids
            raise TypeError(f"labels must be class ids (ints) or names (str), got an array of {labels.dtype}")
        return labels.reshape(-1)[:MAX_IMAGES + 1].tolist()  # one more than allowed: enough to refuse
    if isinstance(labels, (str, numbers.Number)):
        return [labels]
    return list(of_type("labels", labels, (list, tuple), "a class id, a class name, or a list of them"))


def parse_labels(labels, num_classes: int, classes: list | None = None) -> torch.Tensor:
    """Ids or class names (case-insensitive; an entry of `classes` may be a list of synonyms) -> (N,) long
    tensor; out-of-range ids and unknown names raise ValueError, floats and booleans TypeError."""
    labels = _label_list(labels)
    integer("len(labels)", len(labels), min=1, max=MAX_IMAGES)
    names = {}
    for i, c in enumerate(classes or []):
        for alias in [c] if isinstance(c, str) else c:
            names.setdefault(alias.lower(), i)
    shown = [c if isinstance(c, str) else c[0] for c in (classes or [])]
    shown = shown if len(shown) <= 20 else shown[:20] + ["..."]
    out = []
    for lab in labels:
        of_type("labels", lab, (str, numbers.Integral), "class ids (ints) or names (str)")
        if isinstance(lab, str) and not lab.strip().lstrip("-").isdigit():
            if lab.lower() not in names:
                raise ValueError(f"unknown class name {lab!r}; valid names: {shown} or ids 0..{num_classes - 1}")
            out.append(names[lab.lower()])
        elif not 0 <= int(lab) < num_classes:
            raise ValueError(f"class label {int(lab)} out of range: valid ids are 0..{num_classes - 1}")
        else:
            out.append(int(lab))
    return torch.tensor(out, dtype=torch.long)
