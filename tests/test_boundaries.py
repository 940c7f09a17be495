"""design.md's import directions: curation and training never import the UI; training never
imports curation or duckdb. Checked two ways: import-linter over the source, and real imports in
a fresh interpreter (which also catch imports done inside functions at import time)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def _loaded_after(stmt: str) -> set[str]:
    code = f"import sys; {stmt}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_import_linter_contracts_hold():
    proc = subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_curation_loads_no_ui_or_trainer():
    import pkgutil

    import curation

    mods = [m.name for m in pkgutil.walk_packages(curation.__path__, "curation.") if not m.ispkg]
    loaded = _loaded_after("; ".join(f"import {m}" for m in mods))
    assert not loaded & {"textual", "studio", "training", "torch", "transformers"}, loaded


def test_training_loads_no_curation_or_duckdb():
    import pkgutil

    import training

    mods = [f"training.{m.name}" for m in pkgutil.walk_packages(training.__path__, ) if not m.ispkg and not m.name.startswith("__")]
    loaded = _loaded_after("; ".join(f"import {m}" for m in mods) or "import training")
    assert not loaded & {"textual", "studio", "curation", "duckdb"}, loaded


def test_first_screen_imports_no_heavy_ml():
    loaded = _loaded_after("import studio.app, studio.cli")
    assert not loaded & {"torch", "transformers", "peft", "trl", "bitsandbytes", "datasets", "openai", "datasketch"}, loaded


def test_studio_train_on_a_split_folder_needs_neither_duckdb_nor_textual(tmp_path):
    """A GPU box may have the trainer's packages only (the measured H100 box lacks duckdb and
    textual, and both wheels with bitsandbytes exceed one transfer): `studio train SPLIT_DIR`
    must plan and train there. Run with those imports made to fail."""
    from tests.training_fixtures import write_split

    split = write_split(tmp_path / "v1")
    blocker = (  # None in sys.modules: `import x` fails and find_spec(x) is None, as when x is not installed
        "import sys\n"
        "for name in ('duckdb', 'textual', 'datasketch', 'openai', 'textual_plotext'):\n"
        "    sys.modules[name] = None\n"
        "from studio.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    def studio(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", blocker, "-w", str(tmp_path / "ws"), "train", str(split),
                               "--preset", "tiny-demo", *args], cwd=ROOT, capture_output=True, text=True)

    plan = studio("--plan", "--json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert '"memory_gb"' in plan.stdout
    run = studio("--set", "train.max_steps=2", "--set", "data.max_length=64", "--foreground", "--name", "box")
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "ws" / "runs" / "box" / "adapter").is_dir()


def test_no_screen_loads_a_cli_command_module():
    """The Train screen drives training through training.launch, not through `studio train`'s argparse
    layer: importing it loads no studio.commands module, and no screen, widget or the app names one."""
    code = ("import sys; import studio.screens.train; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('studio.commands'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [], out.stdout

    import ast

    studio = ROOT / "studio"
    sources = [studio / "app.py", *sorted((studio / "screens").glob("*.py")), *sorted((studio / "widgets").glob("*.py"))]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                name = "." * node.level + (node.module or "")
                assert not (name.startswith("..commands") or name.startswith("studio.commands")
                            or (name in (".", "..") and any(a.name == "commands" for a in node.names))), \
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"


# Cycles let pass (a strongly connected component inside one of these sets): none, keep it so.
KNOWN_CYCLES: list[set[str]] = []


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of the graph, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            found.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_finds_a_cycle_and_leaves_a_chain():
    edges = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"], "e": []}
    components = sorted(_strongly_connected(sorted(edges), edges))
    assert components == [["a", "b", "c"], ["d"], ["e"]]


def test_no_import_cycle_between_modules():
    """No module of studio/, curation/ or training/ reaches itself through imports (function-level
    and TYPE_CHECKING imports count: a cycle anywhere means neither module can be read, tested or
    moved without the other). A failure names each cycle's modules and the lines that import."""
    import grimp

    graph = grimp.build_graph("studio", "curation", "training", cache_dir=None)
    nodes = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in nodes}
    cycles = [c for c in _strongly_connected(nodes, edges)
              if len(c) > 1 and not any(set(c) <= known for known in KNOWN_CYCLES)]
    report = []
    for component in cycles:
        report.append("cycle: " + " <-> ".join(component))
        members = set(component)
        for importer in component:
            for imported in edges[importer]:
                if imported in members:
                    for d in graph.get_import_details(importer=importer, imported=imported):
                        report.append(f"  {importer}:{d['line_number']} {d['line_contents']}")
    assert not cycles, "\n".join(report)
