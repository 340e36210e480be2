"""The tree shows the architecture: a subpackage per stage with its docstring, no import cycles, kserve/ as KServe
runs it."""

import ast
from pathlib import Path

import fashionrec

PACKAGE = Path(fashionrec.__file__).parent
ROOT = PACKAGE.parents[1]


def module_name(path: Path) -> str:
    return ".".join(("fashionrec", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def imports_of(path: Path) -> set[str]:
    """Every fashionrec module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fashionrec"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("fashionrec")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dependency in sorted(graph.get(node, ())):
            if state.get(dependency) == 1:
                return [*stack[stack.index(dependency) :], dependency]
            if dependency not in state and (cycle := visit(dependency)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles_between_fashionrec_modules() -> None:
    graph = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}
    assert find_cycle(graph) is None, find_cycle(graph)
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check finds one


def test_every_subpackage_says_what_lives_there() -> None:
    subpackages = sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)
    assert {p.name for p in subpackages} >= {"data", "validation", "training", "retrieval", "serving", "local"}
    for init in (p / "__init__.py" for p in subpackages):
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        assert docstring and len(docstring) > 40, f"{init} needs a docstring saying what lives there"
        assert not [n for n in ast.parse(init.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))], init


def test_kserve_holds_only_what_kserve_runs() -> None:
    kserve = ROOT / "kserve"
    assert not (kserve / "__init__.py").exists()
    programs = {p.name for p in kserve.glob("*.py")}
    manifests = "".join(p.read_text() for p in (ROOT / "manifests").rglob("*.yaml"))
    for program in programs - {"encoder_handler.py"}:  # the handler is packed into the .mar, not started
        assert f"/kserve/{program}" in manifests, f"kserve/{program} is run by no manifest"
