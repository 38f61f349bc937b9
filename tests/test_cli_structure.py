"""The CLI layer's shape: no import cycle among its modules (imports inside functions
counted), Typer reached only through its public names, and the size limits."""

from __future__ import annotations

import ast
import re
from pathlib import Path

CLI = Path(__file__).resolve().parent.parent / "stored_messages_cli" / "cli"
PACKAGE = "stored_messages_cli.cli"


def imports_of(path: Path) -> set[str]:
    """The `cli` modules `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(PACKAGE + "."):
            found.add(str(node.module)[len(PACKAGE) + 1:].split(".")[0])
    return found


def test_no_import_cycle_among_the_cli_modules() -> None:
    graph = {path.stem: imports_of(path) for path in CLI.glob("*.py")}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, "import cycle: " + " -> ".join([*path, module])
        if module in done or module not in graph:
            return
        for imported in sorted(graph[module]):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert {"app", "root", "run", "reload"} <= set(graph)


PRIVATE = re.compile(r"\btyper\._|\._click\b|^\s*(import click|from click)\b|__class__\s*=",
                     re.M)


def typer_subclasses(tree: ast.AST) -> list[ast.ClassDef]:
    """The classes of `tree` built on Typer's (directly, or on one of ours that is)."""
    ours = ("SmCommand", "SmGroup", "RootGroup")
    return [node for node in ast.walk(tree) if isinstance(node, ast.ClassDef) and any(
        "typer" in ast.unparse(base) or ast.unparse(base) in ours for base in node.bases)]


def test_typer_is_used_through_its_public_names_only() -> None:
    for path in CLI.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not PRIVATE.search(text), f"{path.name}: {PRIVATE.search(text)}"
        for cls in typer_subclasses(ast.parse(text)):
            for method in cls.body:
                if isinstance(method, ast.FunctionDef):
                    name = method.name
                    assert not (name.startswith("_") and not name.startswith("__")), (
                        f"{path.name}: {cls.name} overrides Typer's private {name}")
    assert typer_subclasses(ast.parse((CLI / "command_classes.py").read_text()))


def test_no_function_over_80_lines_no_class_over_400_no_module_over_600() -> None:
    for path in CLI.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert len(text.splitlines()) <= 600, path.name
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                size = (node.end_lineno or node.lineno) - first + 1
                limit = 400 if isinstance(node, ast.ClassDef) else 80
                assert size <= limit, f"{path.name}: {node.name} has {size} lines"
