"""The code's shape: the layer contract holds, and no module imports itself back through others (imports
inside functions count: grimp reads every import statement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def cycles(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in graph.find_modules_directly_imported_by(m) & modules:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for m in sorted(modules):
        if m not in index:
            visit(m)
    return found


def test_no_import_cycles_between_modules():
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph("cnn_core")
    modules = set(graph.modules)
    assert len(modules) > 40  # the whole package was read
    assert cycles(graph, modules) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path):
    """The check above can fail: a package whose two modules import each other (one inside a function)."""
    pkg = tmp_path / "loopy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def late():\n    from . import a\n    return a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("loopy", cache_dir=None)
        assert cycles(graph, set(graph.modules)) == [["loopy.a", "loopy.b"]]
    finally:
        sys.path.remove(str(tmp_path))


def test_the_layer_contract_holds():
    """``lint-imports`` (.importlinter): each layer imports only those below it, cnn_core never imports
    streamlit, the pages never import torch themselves."""
    p = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 broken" in p.stdout


OWNERS = {"cnn_core/runs/rundir.py", "cnn_core/workflows/sweep.py"}  # RunDir; a sweep's folder
FOLDER_FILES = {"config.json", "status.json", "metrics.csv", "progress.json", "best.pt", "last.pt", "split.json",
                "model_card.md", "report-test.json", "report-val.json", "sweep.json", "sweep.csv"}


def named_files(source: str) -> list[str]:
    """The run or sweep files that a module's code names as a path (a string that is such a file name, or ends
    in /name): ``d / "status.json"``, ``glob("*/sweep.json")``. Messages that mention one do not count."""
    import ast

    return [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and n.value.rsplit("/", 1)[-1] in FOLDER_FILES]


def test_only_the_owners_name_a_run_or_sweep_folders_files():
    """A run's files are RunDir's, a sweep's are workflows.sweep's (sweep_status, sweep_manifest, ...): everyone
    else asks them, so a file's name or place can change in one module."""
    found = {}
    for p in sorted([*ROOT.glob("cnn_core/**/*.py"), *ROOT.glob("pages/*.py"), ROOT / "streamlit_app.py"]):
        rel = p.relative_to(ROOT).as_posix()
        if rel not in OWNERS and named_files(p.read_text()):
            found[rel] = named_files(p.read_text())
    assert found == {}
    assert {"status.json", "sweep.json"} <= set(named_files((ROOT / "cnn_core/workflows/sweep.py").read_text()))


def test_the_file_name_finder_tells_a_path_from_a_message():
    src = ('st = read_json(d / "status.json")\nfor p in f.glob("*/sweep.json"): pass\n'
           'raise CnnError("no last.pt to continue from")\n')
    assert sorted(named_files(src)) == ["*/sweep.json", "status.json"]
