"""No module of the package imports one that imports it back (issue 29).

The graph is read from the source with ``ast``, not by importing anything: every
``import`` and ``from ... import`` counts, at module level, inside a function or under
``TYPE_CHECKING`` alike, since each ties the two modules together. Nodes are the modules
of ``dmlp_plugin``, ``dmlp_adapters`` (``adapters/``) and ``dmlp_integrations``
(``integrations/``). ``from PKG import NAME`` points at the submodule ``NAME`` when there
is one, at the submodule a package's lazy ``_EXPORTS`` names for it, and at ``PKG``'s
``__init__`` otherwise. A package's implicit import of its parents is not an edge: every
module has it, and no ``__init__`` here imports its submodules eagerly.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"dmlp_plugin": ROOT / "dmlp_plugin", "dmlp_adapters": ROOT / "adapters",
            "dmlp_integrations": ROOT / "integrations"}

#: Cycles that stand today in files this test's authors may not edit, each with the way out.
#: The test fails if one of them goes (so the entry goes too) or if any other appears.
KNOWN: set[frozenset[str]] = set()


def _modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, whether it is a package's ``__init__``)."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            out[".".join([package, *(parts[:-1] if is_package else parts)])] = (path, is_package)
    return out


def _literal_exports(tree: ast.Module) -> dict[str, str]:
    """A package's ``_EXPORTS = {name: submodule, **dict.fromkeys([names], submodule)}``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            out: dict[str, str] = {}
            for key, value in zip(node.value.keys, node.value.values):
                if key is None:  # **dict.fromkeys([...], "submodule")
                    names, module = (ast.literal_eval(arg) for arg in value.args)
                    out.update(dict.fromkeys(names, module))
                else:
                    out[ast.literal_eval(key)] = ast.literal_eval(value)
            return out
    return {}


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> {module it imports: line of the first such import}."""
    modules = _modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, (path, _) in modules.items()}
    exports = {name: _literal_exports(tree) for name, tree in trees.items()}

    def target(module: str, name: str | None = None) -> str | None:
        if name is not None and f"{module}.{name}" in modules:
            return f"{module}.{name}"
        if name is not None and name in exports.get(module, {}):
            return f"{module}.{exports[module][name]}"
        while module and module not in modules:  # a name of ours, or of another package
            module = module.rpartition(".")[0]
        return module or None

    graph = {}
    for name, tree in trees.items():
        package = name.split(".") if modules[name][1] else name.split(".")[:-1]
        edges: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found = [target(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    source = ".".join(package[:len(package) - node.level + 1] + ([source] if source else []))
                found = [target(source, alias.name) for alias in node.names]
            else:
                continue
            for module in found:
                if module is not None and module != name:
                    edges.setdefault(module, node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            child = next((m for m in edges if m in graph), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def describe(component: frozenset[str], graph: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{a} -> {b} (line {line})" for a in sorted(component)
                     for b, line in graph[a].items() if b in component)


def test_the_reader_sees_every_kind_of_import():
    graph = import_graph()
    assert "dmlp_plugin.result" in graph["dmlp_plugin.purify"]            # from .result import ...
    assert "dmlp_plugin.config_compat" in graph["dmlp_plugin.config"]     # from .config_compat import upgrade
    assert "dmlp_plugin.purify" in graph["dmlp_plugin.cli.purify"]        # from .. import purify_dataset (lazy)
    assert "dmlp_integrations.apply" in graph["dmlp_plugin.cli.integrate"]  # from dmlp_integrations import apply
    assert "dmlp_integrations.coteaching" in graph["dmlp_adapters.coteaching"]


def test_cycles_are_found():
    toy = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"e": 1}}
    assert cycles(toy) == [frozenset("abc")]


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    found = cycles(graph)
    new = [describe(c, graph) for c in found if c not in KNOWN]
    assert not new, "import cycle(s): " + " | ".join(new)
    gone = [sorted(c) for c in KNOWN if c not in found]
    assert not gone, f"{gone} no longer form a cycle: remove them from KNOWN"
