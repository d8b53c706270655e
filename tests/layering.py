"""The layers of reportgen, lowest first, and a check that every import points down.

``python tests/layering.py`` (run by ``make lint``) reads the package's imports with ``ast``
(nothing is imported, so it needs no torch and takes a moment) and fails, one line per
offending import, on an import of a higher layer, an import between two packages of the same
layer, or an import cycle among modules. Function-level and ``TYPE_CHECKING`` imports count:
they are dependencies all the same.

A module's private names (a leading underscore) are its own: importing one from another
module fails too (make it public, with a docstring, where two modules need it).

The order follows what a build does (inputs -> forward -> pictures -> analyses -> report ->
publish), with one deliberate difference: ``pictures`` is pure array-to-picture code that
knows nothing of models, and the forward pass's recorder draws each layer's grid while the
pass runs (so activations need not be kept), so it sits *below* ``forward``, beside
``inputs``. Where a layer holds several packages, they are independent of each other
(``dataset`` and ``explain`` never import one another).
"""
from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

PACKAGE = "reportgen"

#: Lowest first: a module may import modules of its own package and of any lower layer; the
#: packages of one middle layer are independent. Modules are placed by their longest listed
#: prefix (the package itself, "reportgen", only by its own name).
LAYERS: tuple[tuple[str, ...], ...] = (
    # base: plain Python (no torch) that every layer uses. inputs.modelspec is the text
    # grammar of --model and --model-arg, which BuildOptions checks when it is made.
    ("reportgen.errors", "reportgen.options", "reportgen.progress", "reportgen.cachedir",
     "reportgen.files", "reportgen.formatting", "reportgen.inputs.modelspec",
     "reportgen.__version__", "reportgen.sitelayout", "reportgen.clock"),
    ("reportgen.inputs", "reportgen.pictures"),  # models, weights, images; array -> PNG
    ("reportgen.forward",),  # the one forward pass: hooks, statistics, captures
    ("reportgen.analysis",),  # the one shape every analysis has, and what it runs on
    ("reportgen.dataset", "reportgen.explain"),  # analyses: over a dataset; why and what
    ("reportgen.report",),  # the typed report model, manifest.json, the pages
    ("reportgen.publish",),  # staging the site, single file, deploy, figures
    # the application: the public API (the package's lazy re-exports), build, the CLI
    ("reportgen.build", "reportgen.cli", "reportgen.cli_options", "reportgen.__main__",
     "reportgen"),
)


def place(module: str) -> tuple[int, str]:
    """(layer number, the listed prefix) of a module; a module of no layer is an error."""
    best: tuple[int, str] | None = None
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if inside and (best is None or len(prefix) > len(best[1])):
                best = (number, prefix)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/layering.py")
    return best


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root`` (the folder holding ``reportgen/``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(module: str, path: Path, known: Iterable[str]) -> Iterator[tuple[str, int, str]]:
    """(imported module of the package, line, name) for each import in one file (the name
    imported from it, or "" for a plain ``import``)."""
    known = set(known)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    yield alias.name, node.lineno, ""
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                anchor = module.split(".")[: len(module.split(".")) - node.level
                                           + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                name = f"{base}.{alias.name}"
                if name in known:
                    yield name, node.lineno, ""  # a submodule
                elif base == PACKAGE and alias.name == "__version__":
                    yield "reportgen.__version__", node.lineno, ""  # a constant, not the API
                else:
                    yield base, node.lineno, alias.name


def problems(root: Path) -> list[str]:
    """One line per import that breaks the order or takes a private name, and one per import
    cycle."""
    found = modules(root)
    graph: dict[str, set[str]] = {module: set() for module in found}
    lines = []
    top = len(LAYERS) - 1  # base and application modules may import their own layer's
    for module, path in found.items():
        where = path.relative_to(root)
        try:
            layer, prefix = place(module)
        except LookupError as error:
            lines.append(f"{where}: {error}")
            continue
        for target, line, name in imports(module, path, found):
            if target == module:
                continue
            if name.startswith("_") and not name.startswith("__"):
                lines.append(f"{where}:{line}: {module} imports {name}, a private name of "
                             f"{target}")
            if target in found:
                graph[module].add(target)
            try:
                target_layer, target_prefix = place(target)
            except LookupError:
                continue  # reported as a module of its own (or not a module of ours)
            if target_layer > layer:
                lines.append(f"{where}:{line}: {module} imports {target}, a higher layer "
                             f"({target_prefix} above {prefix})")
            elif target_layer == layer and target_prefix != prefix and 0 < layer < top:
                lines.append(f"{where}:{line}: {module} imports {target}, a sibling of the "
                             f"same layer ({target_prefix} beside {prefix})")
    for cycle in cycles(graph):
        lines.append("import cycle among " + ", ".join(cycle))
    return list(dict.fromkeys(lines))  # one line for several names imported together


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def main() -> int:
    lines = problems(Path(__file__).resolve().parent.parent)
    for line in lines:
        print(line, file=sys.stderr)  # noqa: T201
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
