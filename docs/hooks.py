"""MkDocs hook: the site renders the repository's own files, so nothing is copied and nothing drifts.

- notebooks/*.ipynb become the course pages (mkdocs-jupyter renders their stored outputs), notebooks/README.md the
  instructor notes, data/*.png the studies' figures: added to the site from where they live in git;
- api.md is written from `ditlab._API` (the names `import ditlab` offers), one mkdocstrings entry per name;
- a Markdown link that is right on GitHub (e.g. `../data/scaling.png` from docs/, `../ditlab/sampling.py`) is
  pointed at the page or file of the site, or at the repository on GitHub for source files the site lacks;
- links between notebooks (`02_positional_embeddings.ipynb`) point at their pages.
"""
import os
import posixpath
import re
import tomllib
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
REPO = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
STAND_INS = {}  # repository file -> the generated page that stands in for it
INSTRUCTOR_STUB = """# For instructors

The instructor notes live in `notebooks/README.md`, beside the notebooks; they are not written yet.
"""


def _api_page() -> str:
    import ditlab

    lines = ["# API reference", "",
             "`import ditlab` is instant: each name below loads its module on first use. The rest of the library is",
             "reached through its subpackages (`ditlab.training`, `ditlab.hub.interop`, ...), documented in their",
             "docstrings; [the library](library.md) maps them.", ""]
    for module, names in ditlab._API.items():
        lines += [f"## `{module}`", ""]
        for name in names:
            lines += [f"::: {module}.{name}", "    options:", f"      heading: ditlab.{name}",
                      f"      toc_label: ditlab.{name}", "      show_root_heading: true", "      heading_level: 3", ""]
    return "\n".join(lines)


@event_priority(100)  # before mkdocs-jupyter, which wraps the .ipynb files it finds
def on_files(files, config):
    found = [*sorted((ROOT / "notebooks").glob("*.ipynb")), *sorted((ROOT / "data").glob("*.png"))]
    readme = ROOT / "notebooks" / "README.md"
    for path in found + [readme] * readme.exists():  # src_dir = the repository: mkdocs-jupyter reads them there
        files.append(File(path.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"],
                          config["use_directory_urls"]))
    if not readme.exists():  # a page all the same, so links to it hold
        files.append(File.generated(config, "notebooks/README.md", content=INSTRUCTOR_STUB))
        STAND_INS[readme.resolve()] = "notebooks/README.md"
    files.append(File.generated(config, "api.md", content=_api_page()))
    return files


def _real_dir(file, docs_dir: str) -> Path:
    """The folder a page's relative links start from in the repository (docs/ or notebooks/)."""
    src = file.abs_src_path or os.path.join(docs_dir, file.src_uri)
    return Path(src).parent


def on_page_markdown(markdown, page, config, files):
    here = posixpath.dirname(page.file.src_uri)
    site = {Path(f.abs_src_path).resolve(): f.src_uri for f in files if f.abs_src_path} | STAND_INS

    def fix(m):
        text, link = m.group(1), m.group(2)
        path, _, anchor = link.partition("#")
        if not path or re.match(r"[a-z]+:", path) or path.startswith("/"):
            return m.group(0)
        if posixpath.normpath(posixpath.join(here, path)) in files.src_uris:
            return m.group(0)
        real = (_real_dir(page.file, config["docs_dir"]) / path).resolve()
        if real in site:
            target = posixpath.relpath(site[real], here or ".")
        elif real.exists() and real.is_relative_to(ROOT):
            kind = "tree" if real.is_dir() else "blob"
            target = f"{REPO}/{kind}/main/{real.relative_to(ROOT).as_posix()}"
        else:
            return m.group(0)  # mkdocs reports it (a broken link fails the --strict build)
        return f"{text}]({target}{'#' + anchor if anchor else ''})"

    return re.sub(r"(!?\[[^\]]*)\]\(([^)\s]+)\)", fix, markdown)


def on_page_content(html, page, config, files):
    if not page.file.src_uri.endswith(".ipynb"):
        return html
    here = posixpath.dirname(page.file.src_uri)

    def fix(m):
        uri = posixpath.join(here, m.group(1))
        f = files.get_file_from_path(uri)
        return f'href="{f.url_relative_to(page.file)}{m.group(2) or ""}"' if f else m.group(0)

    return re.sub(r'href="([\w.-]+\.ipynb)(#[^"]*)?"', fix, html)
