"""One build step on top of pyproject.toml (which holds everything else): the repository's `data/` folder (the
shipped checkpoints, their model card, the study results) is copied into the package as `ditlab/_data/`, so a
wheel, an sdist and `pip install git+...` carry it while `data/` stays its only home in git. Every file in
`data/` ships, new ones included; `ditlab.io.paths.shipped_path` finds them in either place. An editable install
(`pip install -e .`) copies nothing: it reads `data/` in the checkout."""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA, PACKED = Path("data"), Path("ditlab", "_data")


def data_files() -> list[Path]:
    """Every file under data/, hidden files and caches excepted."""
    return sorted(p for p in DATA.rglob("*")
                  if p.is_file() and not any(part.startswith((".", "__")) for part in p.parts))


class BuildPyWithData(build_py):
    def _packed(self) -> list[tuple[Path, Path]]:
        return [] if self.editable_mode else \
            [(src, Path(self.build_lib, PACKED, src.relative_to(DATA))) for src in data_files()]

    def run(self):
        super().run()
        for src, dst in self._packed():
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst))

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [str(dst) for _, dst in self._packed()]

    def get_source_files(self):  # what an sdist must contain
        return super().get_source_files() + [str(p) for p in data_files()]


setup(cmdclass={"build_py": BuildPyWithData})
