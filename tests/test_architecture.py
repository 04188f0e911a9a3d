"""The house's rules, read from the source: no import cycle between the project's modules (imports
inside functions included); no function over 60 lines and no class over 150 in al_core and slurm;
the DONE file and the exit codes spelled only in al_core/results.py, which (with analysis) needs
no torch."""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("al_core", "slurm", "analysis", "bench")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def imported(name: str, node: ast.AST, is_package: bool) -> list[str]:
    """The dotted names an import statement of module `name` reaches (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        here = name.split(".") if is_package else name.split(".")[:-1]
        base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
    return [base] + [f"{base}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (the longest known prefix of each name)."""
    mods = modules()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            for target in imported(m, node, f.name == "__init__.py"):
                parts = target.split(".")
                known = next((".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in mods), None)
                if known is not None and known != m:
                    graph[m].add(known)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), or a module importing itself."""
    index, low, stack, on, out = {}, {}, [], set(), []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_project_modules():
    graph = import_graph()
    assert "al_core.loop" in graph and graph["al_core.loop"], "the walker found no imports: it is broken"
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle_through_function_level_imports():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    tree = ast.parse("def f():\n    from al_core import loop\n")
    assert [t for n in ast.walk(tree) for t in imported("al_core.x", n, False)] == ["al_core", "al_core.loop"]
    tree = ast.parse("from . import spec\n")
    assert [t for n in ast.walk(tree) for t in imported("al_core.data", n, True)] == ["al_core.data", "al_core.data.spec"]


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (of modules, classes, functions)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_done_and_the_exit_codes_are_spelled_only_in_the_results_module():
    """The file name "DONE" and the exit codes 75 and 78 as values in code (messages and docs may name them)."""
    found = []
    for name, f in modules().items():
        if name == "al_core.results":
            continue
        tree = ast.parse(f.read_text())
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and id(node) not in skip and type(node.value) in (str, int):
                if node.value in ("DONE", 75, 78):
                    found.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert found == []


MAX_LINES = {ast.FunctionDef: 60, ast.AsyncFunctionDef: 60, ast.ClassDef: 150}


def test_no_function_over_60_lines_and_no_class_over_150_in_al_core_and_slurm():
    """Lines from the `def` or `class` line to the last, docstring, blank and comment lines included."""
    long = []
    for name, f in modules().items():
        if name.split(".")[0] in ("al_core", "slurm"):
            for node in ast.walk(ast.parse(f.read_text())):
                limit = MAX_LINES.get(type(node))
                if limit and node.end_lineno - node.lineno + 1 > limit:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_results_module_needs_no_torch():
    import subprocess

    code = "import sys, al_core.results, analysis.load; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
