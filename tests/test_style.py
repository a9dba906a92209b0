"""The house style, measured: validation at the boundary with ditlab.checks (few `if ...: raise` guards inside the
library), training and sampling functions as short as the algorithm, modules readable in one sitting."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "ditlab"


def guard_lines(path: Path) -> tuple[int, int]:
    """(lines inside `if ...: raise ...` statements, non-blank lines) of one module."""
    src = path.read_text()
    guards = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.If) and not node.orelse and all(isinstance(b, ast.Raise) for b in node.body):
            guards.update(range(node.lineno, node.end_lineno + 1))
    return len(guards), sum(1 for line in src.splitlines() if line.strip())


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text())
    return [f"{path.relative_to(PKG.parent)}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)"
            for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
            and f.end_lineno - f.lineno + 1 > limit]


def test_guards_are_at_most_5_percent_of_the_library():
    counts = {p: guard_lines(p) for p in PKG.rglob("*.py")}
    guards, total = sum(g for g, _ in counts.values()), sum(n for _, n in counts.values())
    worst = sorted(((g / max(n, 1), g, p.relative_to(PKG.parent)) for p, (g, n) in counts.items()), reverse=True)[:8]
    assert guards <= 0.05 * total, f"{guards} of {total} lines are guards; the most guarded: {worst}"


def test_training_and_sampling_functions_fit_on_a_screen():
    paths = [*(PKG / "training").rglob("*.py"), *(PKG / "sampling").rglob("*.py")]
    long = [f for p in paths for f in long_functions(p, 60)]
    assert not long, long


def test_modules_are_readable_in_one_sitting():
    long = [f"{p.relative_to(PKG.parent)} ({n} lines)" for p in PKG.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 330]
    assert not long, long
