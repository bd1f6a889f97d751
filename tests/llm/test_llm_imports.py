"""The LLM modules' import structure: the grid (imported by Snakemake for every command) loads no training code, the
run-time reader loads no tokenizer or writer, and no module of harmonic.llm imports itself back through another."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LLM = Path(__file__).resolve().parents[2] / "harmonic" / "llm"


def modules_loaded_by(module: str) -> set[str]:
    """harmonic.* modules in sys.modules after importing `module` in a fresh interpreter."""
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('harmonic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    ("module", "must_not_load"),
    [
        (
            "harmonic.llm.grid",
            {
                "harmonic.llm.train",
                "harmonic.llm.probe",
                "harmonic.llm.models",
                "harmonic.llm.data",
                "harmonic.llm.checkpoint",
                "harmonic.llm.telemetry",
                "harmonic.llm.analysis",
            },
        ),
        ("harmonic.llm.data", {"harmonic.llm.prepare", "harmonic.llm.tokenizer"}),
    ],
)
def test_module_does_not_load(module, must_not_load):
    loaded = modules_loaded_by(module)
    assert module in loaded
    assert not loaded & must_not_load, sorted(loaded & must_not_load)


def llm_import_graph() -> dict[str, set[str]]:
    """harmonic.llm module -> the harmonic.llm modules it imports (at any depth of its code, lazy imports too)."""
    graph = {}
    for path in LLM.glob("*.py"):
        name = f"harmonic.llm.{path.stem}"
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harmonic.llm."):
                graph[name].add(node.module)
            elif isinstance(node, ast.ImportFrom) and node.module == "harmonic.llm":
                graph[name] |= {f"harmonic.llm.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                graph[name] |= {a.name for a in node.names if a.name.startswith("harmonic.llm.")}
    return graph


def test_no_import_cycle_in_harmonic_llm():
    graph = llm_import_graph()
    assert graph["harmonic.llm.train"] and graph["harmonic.llm.probe"], "the graph reader found no imports"

    def reaches(start: str, target: str, seen: set) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == target or (nxt not in seen and reaches(nxt, target, seen | {nxt})):
                return True
        return False

    cycles = sorted(name for name in graph if reaches(name, name, {name}))
    assert not cycles, f"modules importing themselves back: {cycles}"
