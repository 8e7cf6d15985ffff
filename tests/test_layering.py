"""Layers import only downward (STYLE.md, "Layout"): the import graph of ``src/imgcls``, read with ``ast``.

Every import counts: at module level, inside a function (a late import hides a cycle, it does not remove it)
and under ``if TYPE_CHECKING``. The graph is read from the source files, so nothing is imported to check it.

A *unit* is a sub-package or top-level module of imgcls (``train``, ``evaluate``); ``imgcls`` is the package's
own ``__init__``. A unit may import itself and the units of lower layers; units that share a layer are
siblings and import neither each other nor anything above. Inside a unit, modules import one another without
a cycle. Only the units that study particular papers name a model family's file; the rest reach models
through the registry (``imgcls.models``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "imgcls"

# Bottom to top. The order is the one the code has (the style guide's "models and data at the bottom, cli at
# the top" made precise): predict reads runs, ensembles and ONNX files, so it sits above ensemble and export;
# explain's command reads images as predict does, so explain sits above predict.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("utils",),  # devices, hardware facts, atomic file writes
    ("data", "models", "metrics"),  # datasets; the model zoo and registry; accuracy, confusion, the eval loop
    ("imgcls",),  # the package itself: __version__ and the public names of models and errors
    ("train",),
    ("analysis", "classic", "evaluate", "export"),  # summaries; non-neural baselines; a run's evaluation
    ("ensemble",),
    ("predict",),
    ("experiments", "explain", "serve"),
    ("cli",),
    ("__main__",),
]

# Units that may import a model family's own file (``imgcls.models.zfnet``); they study particular papers.
FAMILY_IMPORTERS = {"models", "experiments", "explain"}
# Files of imgcls.models that are not a family: the registry and what every family shares.
NOT_FAMILIES = ("imgcls.models", "imgcls.models.registry", "imgcls.models.pretrained", "imgcls.models.layers")

# Known exceptions, each with its reason. Keep this list short; an entry is a debt, not a design.
ALLOWED_FAMILY_IMPORTS: set[tuple[str, str]] = set()  # (importer, family module), each with its reason
ALLOWED_CYCLE_EDGES = {
    # The registry imports its package on the first lookup so that every family file has registered itself
    # (imgcls/models/__init__.py imports them all); it uses nothing of the package.
    ("imgcls.models.registry", "imgcls.models"),
}


@dataclass(frozen=True)
class Edge:
    src: str  # the importing module, e.g. "imgcls.train.trainer"
    dst: str  # the imported module (a package stands for its __init__)
    where: str  # "src/imgcls/train/trainer.py:43"


def module_files(root: Path) -> dict[str, Path]:
    """Each module of the package at ``root`` by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(root: Path) -> list[Edge]:
    """Every import of a module of the package at ``root`` by another, wherever in the file it stands."""
    modules = module_files(root)
    edges: dict[Edge, None] = {}  # ordered, without repeats ("from x import a, b" is one import of x)
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: "from . import x", "from ..data import y"
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    module = node.module or ""
                # "from imgcls.train import checkpoint" names a module; "from imgcls.train import train" a package
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names
                ]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # "import imgcls.models.zfnet as z" -> that module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges[Edge(name, target, f"{_shown(path)}:{node.lineno}")] = None
    return list(edges)


def _shown(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("src") :]) if "src" in parts else str(path)


def unit(module: str) -> str:
    """``imgcls.train.trainer`` -> ``train``; ``imgcls.evaluate`` -> ``evaluate``; ``imgcls`` -> ``imgcls``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(layers: list[tuple[str, ...]]) -> dict[str, int]:
    return {u: i for i, units in enumerate(layers) for u in units}


def _describe(u: str, layers: list[tuple[str, ...]]) -> str:
    i = layer_of(layers)[u]
    return f"'{u}' (layer {i}: {', '.join(layers[i])})"


def undeclared_units(
    edges: Iterable[Edge], modules: Iterable[str], layers: list[tuple[str, ...]]
) -> list[str]:
    known = layer_of(layers)
    return sorted({unit(m) for m in modules} - known.keys())


def layer_violations(edges: Iterable[Edge], layers: list[tuple[str, ...]]) -> list[str]:
    """One line per import that goes up a layer or across to a sibling."""
    level = layer_of(layers)
    out = []
    for e in edges:
        a, b = unit(e.src), unit(e.dst)
        if a == b or a not in level or b not in level or level[b] < level[a]:
            continue
        how = "a sibling in the same layer" if level[a] == level[b] else "a higher layer"
        out.append(
            f"{e.where}: {e.src} in {_describe(a, layers)} imports {e.dst} in {_describe(b, layers)}, "
            f"{how}: move what both need down a layer, or the caller up"
        )
    return out


def family_violations(edges: Iterable[Edge], allowed: set[tuple[str, str]]) -> list[str]:
    out = []
    for e in edges:
        shared = e.dst in NOT_FAMILIES or e.dst.startswith("imgcls.models.layers.")
        if (
            e.dst.startswith("imgcls.models.")
            and not shared
            and unit(e.src) not in FAMILY_IMPORTERS
            and (e.src, e.dst) not in allowed
        ):
            out.append(
                f"{e.where}: {e.src} names the model family {e.dst}: reach models through the registry "
                "(imgcls.models) and let the family declare what it needs in its ModelSpec"
            )
    return out


def cycles(edges: Iterable[Edge], allowed: set[tuple[str, str]]) -> list[str]:
    """One line per import cycle among the modules of one unit, each import named with its file and line."""
    graph: dict[str, dict[str, str]] = {}
    for e in edges:
        if unit(e.src) == unit(e.dst) and (e.src, e.dst) not in allowed:
            graph.setdefault(e.src, {}).setdefault(e.dst, e.where)
    found, seen, done = [], set(), set()

    def visit(node: str, path: list[str]) -> None:
        seen.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt in path:  # back to a module on the current path: a cycle
                loop = [*path[path.index(nxt) :], nxt]
                steps = ", ".join(f"{a} -> {b} ({graph[a][b]})" for a, b in zip(loop, loop[1:]))
                found.append(f"import cycle: {steps}: move what both need into a module below both")
            elif nxt not in done and nxt not in seen:
                visit(nxt, [*path, nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in seen:
            visit(start, [start])
    return found


def _fail_if(problems: list[str], what: str) -> None:
    if problems:
        pytest.fail(f"{len(problems)} {what}:\n" + "\n".join(problems), pytrace=False)


EDGES = import_graph(SRC)


def test_every_unit_has_a_layer() -> None:
    missing = undeclared_units(EDGES, module_files(SRC), LAYERS)
    _fail_if(
        [
            f"'{u}' is in no layer: add it to LAYERS in tests/test_layering.py, above what it imports"
            for u in missing
        ],
        "units without a layer",
    )


def test_layers_import_only_downward() -> None:
    _fail_if(layer_violations(EDGES, LAYERS), "imports that do not go down a layer")


def test_no_import_cycle_inside_a_unit() -> None:
    _fail_if(cycles(EDGES, ALLOWED_CYCLE_EDGES), "import cycles")


def test_only_paper_studies_name_a_model_family() -> None:
    _fail_if(family_violations(EDGES, ALLOWED_FAMILY_IMPORTS), "imports of a model family's own file")


def test_allowed_exceptions_still_exist() -> None:
    # An exception whose import is gone is stale: remove it, so the list shows only the debts that remain.
    pairs = {(e.src, e.dst) for e in EDGES}
    stale = sorted((ALLOWED_FAMILY_IMPORTS | ALLOWED_CYCLE_EDGES) - pairs)
    _fail_if([f"{a} no longer imports {b}: remove the entry" for a, b in stale], "stale exceptions")


def test_the_checks_catch_a_late_import_going_up(tmp_path: Path) -> None:
    # A tiny package with the faults the checks exist for, each hidden inside a function.
    pkg = tmp_path / "src" / "imgcls"
    files = {
        "__init__.py": "",
        "errors.py": "",
        "train/__init__.py": "",
        "train/trainer.py": "from imgcls.train import loop\ndef f():\n    from imgcls.evaluate import run\n",
        "train/loop.py": "def g():\n    from . import trainer\n",
        "evaluate.py": "from imgcls.train import trainer\n",
        "models/__init__.py": "",
        "models/zfnet.py": "",
        "data/__init__.py": "def h():\n    import imgcls.models.zfnet as z\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    edges = import_graph(pkg)
    layers = [("errors",), ("models",), ("data",), ("imgcls",), ("train",), ("evaluate",)]
    up = layer_violations(edges, layers)
    assert len(up) == 1 and up[0].startswith("src/imgcls/train/trainer.py:3: imgcls.train.trainer")
    assert "imports imgcls.evaluate in 'evaluate' (layer 5: evaluate), a higher layer" in up[0]
    across = layer_violations(edges, [("errors",), ("data", "models", "imgcls", "train", "evaluate")])
    assert any("data/__init__.py:2" in line and "a sibling" in line for line in across)
    (loop,) = cycles(edges, set())
    assert "imgcls.train.loop -> imgcls.train.trainer (src/imgcls/train/loop.py:2)" in loop
    assert cycles(edges, {("imgcls.train.loop", "imgcls.train.trainer")}) == []
    (named,) = family_violations(edges, set())
    assert named.startswith(
        "src/imgcls/data/__init__.py:2: imgcls.data names the model family imgcls.models.zfnet"
    )
    assert undeclared_units(edges, module_files(pkg), layers[:-1]) == ["evaluate"]
