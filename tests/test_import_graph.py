"""The import graph is a picture of the design: no cycle among `transferbench` modules.

Read from the source with `ast` (nothing is imported), counting module-level and function-level
imports alike: an import inside a function still ties the two modules together. Imports under
`if TYPE_CHECKING:` are left out (they never run; annotations only).
"""

from __future__ import annotations

import ast
import graphlib
import importlib.util
import pkgutil
from pathlib import Path

# Packages whose modules are walked (`transferbench.indicators` lives in the top-level `indicators/`
# folder, mapped into the package by pyproject.toml).
PACKAGES = ("transferbench", "transferbench.indicators")

# Cycles known and being removed elsewhere, each as the sorted module names of its strongly
# connected part. Keep this list explicit and small; drop an entry once its cycle is gone.
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_files() -> dict[str, Path]:
    """Every module of `PACKAGES` by dotted name, with its source file."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        spec = importlib.util.find_spec(package)
        found[package] = Path(spec.origin)
        for info in pkgutil.walk_packages(spec.submodule_search_locations, f"{package}."):
            found[info.name] = Path(importlib.util.find_spec(info.name).origin)
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(name: str, file: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that `name` (source `file`) imports anywhere in its body."""
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(file.read_text(encoding="utf-8"), str(file)))
    found = set()
    for target in targets:
        while target and target not in modules:  # `a.b.attr` -> the module `a.b`
            target = target.rpartition(".")[0]
        # a package's `__init__` runs before its submodules, so importing a parent package is no edge
        if target and target != name and not name.startswith(f"{target}."):
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imported_modules(name, file, set(files)) for name, file in files.items()}


def first_cycle(graph: dict[str, set[str]], known: set[frozenset[str]] = frozenset()) -> list[str]:
    """One import cycle of `graph` as a path `[a, b, ..., a]` (edges among the modules of a `known`
    cycle are left out), or [] when there is none."""
    edges = {name: {t for t in targets if not any({name, t} <= cycle for cycle in known)}
             for name, targets in graph.items()}
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        return list(reversed(exc.args[1]))  # graphlib lists it against the edges' direction
    return []


def test_no_import_cycle_among_transferbench_modules():
    graph = import_graph()
    assert {"transferbench.tasks.schema", "transferbench.indicators.baselines"} <= set(graph)
    cycle = first_cycle(graph, KNOWN_CYCLES)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_a_cycle_is_reported_as_its_path():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = first_cycle(graph)
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert all(after in graph[before] for before, after in zip(cycle, cycle[1:]))
    assert first_cycle(graph, {frozenset({"a", "b", "c"})}) == []
    assert first_cycle({"a": {"b"}, "b": set()}) == []


def test_function_level_and_relative_imports_count(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text("def f():\n    from pkg.two import g\n")
    (package / "two.py").write_text("from . import one\nfrom typing import TYPE_CHECKING\n"
                                    "if TYPE_CHECKING:\n    from pkg import three\n")
    (package / "three.py").write_text("import pkg.one\n")
    modules = {"pkg", "pkg.one", "pkg.two", "pkg.three"}
    assert imported_modules("pkg.one", package / "one.py", modules) == {"pkg.two"}
    assert imported_modules("pkg.two", package / "two.py", modules) == {"pkg.one"}
    assert imported_modules("pkg.three", package / "three.py", modules) == {"pkg.one"}
    graph = {name: imported_modules(name, package / f"{name.rpartition('.')[2] or '__init__'}.py", modules)
             for name in ("pkg.one", "pkg.two")}
    assert first_cycle(graph) in (["pkg.one", "pkg.two", "pkg.one"], ["pkg.two", "pkg.one", "pkg.two"])


def test_task_schema_and_catalog_import_one_way():
    """The catalog reads the schema; the schema (data) never loads tasks (`task_catalog.suite_tasks`)."""
    graph = import_graph()
    assert "transferbench.tasks.schema" in graph["transferbench.tasks.catalog"]
    assert "transferbench.tasks.catalog" not in graph["transferbench.tasks.schema"]


# The stages in the order data flows (docs/architecture.md): a module imports only from its own
# stage and the stages before it. The foundation (errors, registry, the store, child processes,
# progress, manifests, JSON-tree comparison, seed lists) comes first, the entry points last.
STAGES = (
    # package data mapped into the package (`tasks/`, `reference/`): found as modules in an installed,
    # non-editable copy (its `__init__.py` only), where tox runs the suite
    ("packaged data", {"task_files", "references"}),
    ("foundation", {"errors", "registry", "store", "processes", "progress", "manifest", "json_trees", "seeds"}),
    ("tasks", {"tasks"}),
    ("model", {"model"}),
    ("pipeline", {"pipeline"}),
    ("reference", {"reference"}),
    ("scoring", {"scoring", "indicators"}),
    ("evaluation", {"evaluation"}),
    ("leaderboard", {"leaderboard"}),
    ("analysis", {"analysis"}),
    ("entry points", {"run_config", "api", "cli"}),
)


def stage_of(module: str) -> int:
    """The index in `STAGES` of a `transferbench` module (by its first name below the package)."""
    part = module.split(".")[1] if "." in module else ""
    for index, (_, names) in enumerate(STAGES):
        if part in names:
            return index
    raise AssertionError(f"{module} is in no stage: add its package or module to STAGES (and docs/architecture.md)")


def test_every_module_is_in_a_stage():
    for module in import_graph():
        if module != "transferbench":  # the package itself: its name, version and `run`
            stage_of(module)


def test_imports_flow_one_way_between_stages():
    backwards = [f"{module} ({STAGES[stage_of(module)][0]}) imports {target} ({STAGES[stage_of(target)][0]})"
                 for module, targets in import_graph().items() if module != "transferbench"
                 for target in targets if stage_of(target) > stage_of(module)]
    assert not backwards, "imports that flow back up the pipeline:\n" + "\n".join(sorted(backwards))
