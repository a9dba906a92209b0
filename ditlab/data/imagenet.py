"""The 1000 ImageNet classes (the released DiTs' labels): names, WordNet synonyms and ids, by class index.

    imagenet_classes()[207]                 # "golden retriever"
    imagenet_class_index("Golden Retriever")  # 207; also WordNet ids ("n02099601") and ints
"""
import difflib
import functools
import json
from pathlib import Path


@functools.cache
def _imagenet_table() -> tuple:
    data = json.loads(Path(__file__).with_name("imagenet_classes.json").read_text())
    return tuple((wnid, tuple(n.strip() for n in names.split(","))) for wnid, names in data["classes"])


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").lower().split())


@functools.cache
def _name_index() -> dict:
    index = {}
    for i, (wnid, names) in enumerate(_imagenet_table()):
        index.setdefault(wnid, []).append(i)
        for n in names:
            if i not in index.setdefault(_norm(n), []):
                index[_norm(n)].append(i)
    return index


def imagenet_names() -> list[list[str]]:
    """All names (WordNet synonyms) of the 1000 ImageNet classes, by class index."""
    return [list(names) for _, names in _imagenet_table()]


def imagenet_classes() -> list[str]:
    """The first name of each ImageNet class: imagenet_classes()[207] == "golden retriever"."""
    return [names[0] for _, names in _imagenet_table()]


def imagenet_class_index(name) -> int:
    """Class index from a name or synonym (case-insensitive), a WordNet id ("n02099601") or an int."""
    if isinstance(name, int) and not isinstance(name, bool):
        if not 0 <= name < 1000:
            raise ValueError(f"ImageNet class index must be in [0, 999], got {name}")
        return name
    if not isinstance(name, str):
        raise TypeError(f"class must be a name (str) or an index (int), got {type(name).__name__}")
    if name.strip().isdigit():
        return imagenet_class_index(int(name))
    hits = _name_index().get(_norm(name))
    if not hits:
        close = difflib.get_close_matches(_norm(name), list(_name_index()), n=5)
        raise ValueError(f"unknown ImageNet class {name!r}; close names: {close}")
    if len(hits) > 1:
        table = _imagenet_table()
        opts = "; ".join(f"{i} = {table[i][0]} ({', '.join(table[i][1])})" for i in hits)
        raise ValueError(f"ImageNet class name {name!r} is ambiguous: {opts}. Pass the index or the WordNet id")
    return hits[0]


def imagenet_labels(names) -> list[int]:
    """`imagenet_class_index` for each of `names` (a single name is allowed)."""
    if isinstance(names, (str, int)):
        names = [names]
    return [imagenet_class_index(n) for n in names]
