"""The package's layers import downward only, and an import inside a function only defers a heavy optional dependency.

The layers, lowest first, are stated once here and in the README's layout section (a test holds them equal). A module
may import any module of a lower layer and any module of its own group (its subpackage, or itself for a top-level
module); a group never imports another group of its own layer. `cli.py` defers nearly every import to keep the
command quick to start, so the in-function rule leaves it out; `TYPE_CHECKING` imports count as dependencies too.
"""

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import fashionrec

PACKAGE = Path(fashionrec.__file__).parent
README = PACKAGE.parents[1] / "README.md"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("config",),
    ("charts", "console", "imaging", "params", "storage", "workdir", "checkout", "provenance", "products"),
    ("data", "retrieval", "engagement"),
    ("training", "drift"),
    ("serving",),
    ("catalog",),
    ("deploy", "monitoring", "images"),
    ("kubeflow", "web", "local"),
    ("cli",),
)
# What a deferred import may stand for: an optional dependency that is slow to import or absent from some images.
HEAVY = ("torch", "torchvision", "safetensors", "faiss", "feast", "great_expectations", "kserve", "mlflow", "kfp",
         "kubernetes", "selenium", "fsspec", "ts", "model_archiver")  # fmt: skip
NO_DEFERRAL_RULE = {"fashionrec.cli"}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a fashionrec module, or a third-party top-level package
    line: int
    deferred: bool  # inside a function
    type_only: bool  # under `if TYPE_CHECKING:`


def module_name(package: Path, path: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts).removesuffix(".__init__")


def imports_in(package: Path, path: Path) -> list[Import]:
    """Every import of ``path``: the fashionrec modules (``from fashionrec.a import b`` names ``fashionrec.a.b`` when
    that is a module) and the third-party packages."""
    importer = module_name(package, path)
    root = package.name
    found: list[Import] = []

    def add(target: str, node: ast.stmt, deferred: bool, type_only: bool) -> None:
        found.append(Import(importer, target, node.lineno, deferred, type_only))

    def visit(node: ast.AST, deferred: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    add(alias.name, child, deferred, type_only)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                if child.module.startswith(f"{root}."):
                    for alias in child.names:
                        sub = f"{child.module}.{alias.name}"
                        is_module = (package.parent / Path(*sub.split("."))).with_suffix(".py").is_file()
                        add(sub if is_module else child.module, child, deferred, type_only)
                else:
                    add(child.module, child, deferred, type_only)
            is_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            checking = isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test)
            visit(child, deferred or is_function, type_only or checking)

    visit(ast.parse(path.read_text(encoding="utf-8")), False, False)
    return found


def group_of(module: str) -> str:
    """``fashionrec.data.split`` -> ``data``; ``fashionrec.config`` -> ``config``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_violations(package: Path, layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    """Each import of a higher layer, or of another group of the same layer, as ``importer:line -> target (why)``."""
    layer = {group: index for index, groups in enumerate(layers) for group in groups}
    found = []
    for path in sorted(package.rglob("*.py")):
        for imp in imports_in(package, path):
            if not imp.target.startswith(f"{package.name}."):
                continue
            source, target = group_of(imp.importer), group_of(imp.target)
            if source not in layer or target not in layer:
                found.append(f"{imp.importer}:{imp.line} -> {imp.target} (a group that no layer names)")
            elif layer[target] > layer[source]:
                found.append(f"{imp.importer}:{imp.line} -> {imp.target} (upward: {source} sits below {target})")
            elif layer[target] == layer[source] and target != source:
                found.append(f"{imp.importer}:{imp.line} -> {imp.target} (sideways: {source} and {target} share a layer)")
    return found


def heavy_dependencies(package: Path) -> dict[str, set[str]]:
    """Each module's heavy optional dependencies imported at module level, its own and those of the fashionrec modules
    it imports at module level."""
    own: dict[str, set[str]] = {}
    uses: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        name = module_name(package, path)
        top = [i for i in imports_in(package, path) if not i.deferred and not i.type_only]
        own[name] = {i.target.split(".")[0] for i in top} & set(HEAVY)
        uses[name] = {i.target for i in top if i.target.startswith(f"{package.name}.")}
    closed: dict[str, set[str]] = {}

    def close(name: str, seen: frozenset[str]) -> set[str]:
        if name not in closed:
            heavy = set(own.get(name, set()))
            for used in uses.get(name, set()) - seen:
                heavy |= close(used, seen | {name})
            closed[name] = heavy
        return closed[name]

    return {name: close(name, frozenset()) for name in own}


def comments_above(lines: list[str], line: int) -> str:
    """The comment on an import's own line and on the comment or import lines right above it (one deferred block)."""
    text = lines[line - 1].partition("#")[2]
    for above in reversed(lines[: line - 1]):
        stripped = above.strip()
        if stripped.startswith("#"):
            text += " " + stripped
        elif not stripped.startswith(("from ", "import ")):
            break
    return text


def deferral_violations(package: Path, exempt: set[str] = NO_DEFERRAL_RULE) -> list[str]:
    """Each in-function import of a package module that defers no heavy dependency, or says not which it defers."""
    heavy = heavy_dependencies(package)
    found = []
    for path in sorted(package.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for imp in imports_in(package, path):
            if not imp.deferred or imp.type_only or imp.importer in exempt or not imp.target.startswith(f"{package.name}."):
                continue
            # what importing it at the top would add: the importer may load some heavy dependencies already
            deferred = heavy.get(imp.target, set()) - heavy.get(imp.importer, set())
            comment = comments_above(lines, imp.line)
            if not deferred:
                found.append(f"{imp.importer}:{imp.line} -> {imp.target} (defers no heavy dependency: import it at the top)")
            elif not any(re.search(rf"\b{name}\b", comment) for name in deferred):
                found.append(f"{imp.importer}:{imp.line} -> {imp.target} (say which it defers: {', '.join(sorted(deferred))})")
    return found


def in_function_imports(package: Path, exempt: set[str] = NO_DEFERRAL_RULE) -> int:
    """Import statements of package modules inside functions (one per statement, however many names it takes)."""
    return len(
        {
            (imp.importer, imp.line)
            for path in package.rglob("*.py")
            for imp in imports_in(package, path)
            if imp.deferred and not imp.type_only and imp.importer not in exempt and imp.target.startswith(f"{package.name}.")
        }
    )


def test_every_module_imports_only_lower_layers_or_its_own_group() -> None:
    assert layer_violations(PACKAGE) == []


def test_every_import_inside_a_function_defers_a_heavy_dependency_and_says_which() -> None:
    assert deferral_violations(PACKAGE) == []
    print(f"in-function imports of fashionrec modules outside cli.py: {in_function_imports(PACKAGE)}", file=sys.stderr)


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "fashionrec"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text, encoding="utf-8")
    return package


def test_the_checks_find_an_upward_a_sideways_and_an_unexplained_deferred_import(tmp_path: Path) -> None:
    """The same checks fail on a copy of the layering with a deliberately added upward import (serving reaching up into
    the local launcher), a sideways one (data into retrieval) and a deferred import that defers nothing heavy."""
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "LOOPBACK = '127.0.0.1'\n",
            "data/__init__.py": "",
            "data/split.py": "from fashionrec.retrieval.index import ItemIndex\n",
            "retrieval/__init__.py": "",
            "retrieval/index.py": "import faiss\n\nclass ItemIndex: ...\n",
            "serving/__init__.py": "",
            "serving/transformer.py": (
                "from fashionrec.config import LOOPBACK\nfrom fashionrec.local.processes import LIVE_DIR\n\n\n"
                "def load():\n    from fashionrec.retrieval.index import ItemIndex  # faiss\n\n\n"
                "def search():\n    from fashionrec.retrieval.index import ItemIndex\n\n\n"
                "def address():\n    from fashionrec.config import LOOPBACK  # faiss\n"
            ),
            "local/__init__.py": "",
            "local/processes.py": "from fashionrec.serving.transformer import load\nLIVE_DIR = 'live'\n",
        },
    )
    assert layer_violations(package) == [
        "fashionrec.data.split:1 -> fashionrec.retrieval.index (sideways: data and retrieval share a layer)",
        "fashionrec.serving.transformer:2 -> fashionrec.local.processes (upward: serving sits below local)",
    ]
    assert deferral_violations(package) == [
        "fashionrec.serving.transformer:10 -> fashionrec.retrieval.index (say which it defers: faiss)",
        "fashionrec.serving.transformer:14 -> fashionrec.config (defers no heavy dependency: import it at the top)",
    ]
    assert in_function_imports(package) == 3
    # a deferral of what the importer already loads at the top defers nothing
    (package / "retrieval" / "calibration.py").write_text(
        "import faiss\n\n\ndef build():\n    from fashionrec.retrieval.index import ItemIndex  # faiss\n", encoding="utf-8"
    )
    assert (
        "fashionrec.retrieval.calibration:5 -> fashionrec.retrieval.index (defers no heavy dependency: import it at the top)"
        in (deferral_violations(package))
    )


def test_the_readme_states_the_same_layers() -> None:
    """The README's layout section lists the layers, lowest first, as ``N. group, group``."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    stated = re.findall(r"^\s*(\d+)\. `([^\n]+?)`\s*(?:—|$)", section, flags=re.MULTILINE)
    assert [tuple(g.strip() for g in groups.replace("`", "").split(",")) for _, groups in stated] == list(LAYERS)
