"""The shape of the package, checked: no import cycle, size limits, public APIs of dependencies.

Read from the source with `ast` (nothing is imported), so a function-level import counts as
much as one at the top: a cycle hidden inside a function is still a cycle.
"""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = "stored_messages_cli"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80
# Libraries whose `_private` names the package must never use (their minor releases move them).
WATCHED_LIBRARIES = frozenset({
    "botocore", "boto3", "typer", "click", "pydantic", "pydantic_settings", "json", "urllib3",
    "google", "azure", "psycopg", "sqlite3", "rich", "prometheus_client", "platformdirs",
    "tomlkit", "cryptography"})


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


@cache
def modules() -> dict[str, Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        found[name] = Module(name, path, ast.parse(path.read_text(), str(path)))
    return found


def _resolve(name: str) -> str | None:
    """The deepest module of the package that `name` is or lies in."""
    known = modules()
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: Module) -> set[str]:
    """Every module of the package that `module` imports, anywhere in its body."""
    found: set[str] = set()
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.package.split(".")
                base = base[:len(base) - (node.level - 1)]
                start = ".".join(base + ([node.module] if node.module else []))
            else:
                start = node.module or ""
            # `from X import name`: the submodule X.name when there is one, else X itself
            targets = [f"{start}.{alias.name}" if f"{start}.{alias.name}" in modules() else start
                       for alias in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                resolved = _resolve(target)
                if resolved and resolved != module.name:
                    found.add(resolved)
                    found.update(_packages_run_first(module.name, resolved))
    return found


def _packages_run_first(importer: str, target: str) -> set[str]:
    """The packages whose `__init__` runs before `target` does (`a.b` for `a.b.c`), except
    those the importer already lies in (they are running)."""
    parts = target.split(".")
    prefixes = {".".join(parts[:end]) for end in range(2, len(parts))}
    return {prefix for prefix in prefixes
            if prefix in modules() and not (importer + ".").startswith(prefix + ".")}


def import_cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = {name: imports_of(module) for name, module in modules().items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in graph:
        if name not in index:
            visit(name)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    assert import_cycles() == []


def test_the_cycle_finder_sees_a_cycle_through_a_package_init() -> None:
    # `from .pkg.leaf import x` runs `pkg/__init__.py` first; if that imports back, it is a
    # cycle even though no module names the other directly.
    root = Module(f"{PACKAGE}.c", ROOT / "c.py", ast.parse("from .pkg.leaf import x\n"))
    package = Module(f"{PACKAGE}.pkg", ROOT / "pkg" / "__init__.py",
                     ast.parse("from .other import y\n"))
    leaf = Module(f"{PACKAGE}.pkg.leaf", ROOT / "pkg" / "leaf.py", ast.parse("x = 1\n"))
    other = Module(f"{PACKAGE}.pkg.other", ROOT / "pkg" / "other.py",
                   ast.parse("from ..c import z\n"))
    saved = dict(modules())
    modules().update({m.name: m for m in (root, package, leaf, other)})
    try:
        assert [f"{PACKAGE}.c", f"{PACKAGE}.pkg", f"{PACKAGE}.pkg.other"] in import_cycles()
    finally:
        modules().clear()
        modules().update(saved)


def test_the_cycle_finder_sees_a_cycle_hidden_in_a_function() -> None:
    # The check itself must be able to fail: two modules importing each other, one of them
    # from inside a function, form a cycle.
    a = Module(f"{PACKAGE}.a", ROOT / "a.py", ast.parse("from . import b\n"))
    b = Module(f"{PACKAGE}.b", ROOT / "b.py", ast.parse("def f():\n    from .a import x\n"))
    saved = dict(modules())
    modules().update({a.name: a, b.name: b})
    try:
        assert [f"{PACKAGE}.a", f"{PACKAGE}.b"] in import_cycles()
    finally:
        modules().clear()
        modules().update(saved)


def _too_long() -> list[str]:
    found = []
    for module in modules().values():
        lines = len(module.path.read_text().splitlines())
        where = module.path.relative_to(ROOT.parent)
        if lines > MAX_MODULE_LINES:
            found.append(f"module {where}: {lines} lines")
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
                if length > limit:
                    found.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_class_or_function_is_over_its_size_limit() -> None:
    assert _too_long() == []


def _own_private_names() -> set[str]:
    """Every `_name` the package itself defines: functions, classes, attributes, variables."""
    names: set[str] = set()
    for module in modules().values():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Assign) and any(
                    isinstance(target, ast.Name) and target.id == "__slots__"
                    for target in node.targets):
                names.update(element.value for element in ast.walk(node.value)
                             if isinstance(element, ast.Constant)
                             and isinstance(element.value, str))
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names_of_other_libraries() -> list[str]:
    """`_name` attributes the package reads but never defines, and private imports."""
    own = _own_private_names() | {name for name in dir(builtins) if _private(name)} | {
        "_exit", "_replace", "_asdict", "_fields", "_make"}  # os._exit; namedtuple's documented API
    found = []
    for module in modules().values():
        where = module.path.relative_to(ROOT.parent)
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
                found.append(f"{where}:{node.lineno} .{node.attr}")
            elif isinstance(node, ast.ImportFrom) and not node.level:
                library = (node.module or "").split(".")[0]
                dotted = (node.module or "").split(".")
                if library in WATCHED_LIBRARIES and (
                        any(_private(part) for part in dotted)
                        or any(_private(alias.name) for alias in node.names)):
                    found.append(f"{where}:{node.lineno} from {node.module} import …")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] in WATCHED_LIBRARIES and any(_private(p) for p in parts):
                        found.append(f"{where}:{node.lineno} import {alias.name}")
    return found


def test_no_private_name_of_another_library_is_used() -> None:
    assert private_names_of_other_libraries() == []


def _library_classes() -> dict[str, ast.ClassDef]:
    """The package's classes built on another library's (directly or through ours)."""
    classes = {node.name: node for module in modules().values()
               for node in ast.walk(module.tree) if isinstance(node, ast.ClassDef)}
    found: dict[str, ast.ClassDef] = {}
    changed = True
    while changed:
        changed = False
        for name, node in classes.items():
            bases = [ast.unparse(base) for base in node.bases]
            if name not in found and any(
                    base.split(".")[0] in WATCHED_LIBRARIES or base in found for base in bases):
                found[name] = node
                changed = True
    return found


def test_no_private_method_of_another_library_is_overridden_or_swapped() -> None:
    overrides = [f"{name}.{item.name}" for name, node in _library_classes().items()
                 for item in node.body
                 if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                 and _private(item.name)]
    swaps = [f"{module.path.relative_to(ROOT.parent)}:{node.lineno}"
             for module in modules().values() for node in ast.walk(module.tree)
             if isinstance(node, ast.Attribute) and node.attr == "__class__"
             and isinstance(node.ctx, ast.Store)]
    assert overrides == [] and swaps == []
    assert "SmCommand" in _library_classes()  # the check sees the CLI's Typer classes


def test_nothing_outside_the_spool_touches_sql() -> None:
    spool = f"{PACKAGE}.spool"
    found = []
    for name, module in modules().items():
        if name == spool or name.startswith(spool + "."):
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Attribute) and node.attr in {
                    "execute", "executemany", "executescript", "conn", "lock", "cursor"}:
                found.append(f"{module.path.relative_to(ROOT.parent)}:{node.lineno}"
                             f" .{node.attr}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "")]
                if any((n or "").split(".")[0] in {"sqlite3", "psycopg"} for n in names):
                    found.append(f"{module.path.relative_to(ROOT.parent)}:{node.lineno}"
                                 " imports a database driver")
    assert found == []


def test_nothing_below_the_cli_imports_typer_or_rich() -> None:
    cli = f"{PACKAGE}.cli"
    found = defaultdict(list)
    for name, module in modules().items():
        if name == cli or name.startswith(cli + "."):
            continue
        for node in ast.walk(module.tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            found[name] += [root for root in roots if root in {"typer", "rich", "click"}]
    assert {name: roots for name, roots in found.items() if roots} == {}
