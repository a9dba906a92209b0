"""Where things live: the cache folder, the files shipped with the package (data/ in a clone, ditlab/_data/ in a
wheel) and the official reference outputs among them."""
import os
from importlib import resources
from pathlib import Path


def default_cache_dir(cache_dir=None) -> Path:
    """`cache_dir`, else $DITLAB_CACHE, else ~/.cache/ditlab."""
    return Path(cache_dir or os.environ.get("DITLAB_CACHE") or Path.home() / ".cache" / "ditlab").expanduser()


def shipped_path(*parts: str) -> Path:
    """A file or folder of the repository's `data/` (shipped checkpoints, their model card, study results), e.g.
    `shipped_path("scaling.csv")`: inside the package (`ditlab/_data/`, put there when a wheel is built, see
    setup.py) after `pip install`, else in the checkout beside the package (editable install)."""
    packed = resources.files("ditlab") / "_data"
    root = Path(str(packed)) if packed.is_dir() else Path(__file__).resolve().parents[2] / "data"
    return root.joinpath(*parts)


def fixture_path(name: str) -> Path:
    """A file of the official code's reference outputs, shipped with the package so a wheel (Colab) compares
    against them as a clone does, e.g. `fixture_path("official_dit/DiT-tiny-release.pt")` (what each file holds:
    data/fixtures/README.md). FileNotFoundError lists what exists."""
    path = shipped_path("fixtures", name)
    if not path.is_file():
        known = sorted(str(q.relative_to(shipped_path("fixtures"))) for q in shipped_path("fixtures").rglob("*")
                       if q.is_file())
        raise FileNotFoundError(f"reference file {name!r} is not among ditlab's shipped fixtures: {known}")
    return path
