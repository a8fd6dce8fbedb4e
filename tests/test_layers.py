"""The layers hold: every gptir module imports (at run time: anywhere but under ``if TYPE_CHECKING``)
only modules of its own or an earlier layer, never a later one, and never through importlib. The
layer list is DEVELOPERS.md's table; a module missing from it fails here, so a new module is placed
on purpose."""

from __future__ import annotations

import ast
import importlib
import pathlib

PKG = pathlib.Path(__file__).resolve().parent.parent / "gptir"

# bottom-up; a module may import modules of its own layer or earlier ones
LAYERS: list[tuple[str, ...]] = [
    ("ir", "fileio", "rng", "budget", "gcpause"),
    ("ops",),
    ("memory",),
    ("tracing",),
    ("printer", "diagnostics", "graphio", "parser", "fastparse", "text"),
    ("autodiff",),
    ("passes",),
    ("interp", "codegen", "jaxback", "native"),
    ("diff", "value"),
    ("layout", "dot", "viewer"),
    ("nn",),
    ("model",),
    ("optim",),
    ("data", "train", "sample", "checkpoint"),
    ("cli", "__init__", "__main__"),
]


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = rel.parts
    if parts[0] == "cli":
        return "cli"  # the CLI package is one layer
    return ".".join(parts)


def _layer_of() -> dict[str, int]:
    return {m: i for i, layer in enumerate(LAYERS) for m in layer}


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


# Deliberate call-time imports of a later layer, each with its reason (checked like everything else).
CALL_TIME_UPWARD: dict[tuple[str, str], str] = {
    ("ir", "viewer"): "Jupyter's display protocol finds _repr_svg_/_repr_html_ on Graph itself; the "
                      "method imports the viewer only when a notebook calls it",
}


def _runtime_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, imported gptir module) for every import that runs (``from gptir import x`` is the
    submodule ``x`` when there is one, else the package itself)."""
    out: list[tuple[int, str]] = []

    def target(dotted: str) -> str:
        rest = dotted[len("gptir."):] if dotted.startswith("gptir.") else ""
        if not rest:
            return "__init__"
        return "cli" if rest.split(".")[0] == "cli" else rest

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "gptir" or alias.name.startswith("gptir."):
                    out.append((node.lineno, target(alias.name)))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and (
                node.module == "gptir" or node.module.startswith("gptir.")):
            if node.module == "gptir":
                for alias in node.names:
                    sub = PKG / f"{alias.name}.py"
                    out.append((node.lineno, alias.name if sub.exists() else
                                "cli" if alias.name == "cli" else "__init__"))
            else:
                out.append((node.lineno, target(node.module)))
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            out.append((node.lineno, "<relative>"))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) and \
                str(node.args[0].value).startswith("gptir"):
            out.append((node.lineno, "<importlib>"))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def test_every_module_is_in_a_layer():
    layer = _layer_of()
    missing = sorted({_module_name(p) for p in PKG.rglob("*.py")} - set(layer))
    assert missing == [], f"place these modules in LAYERS (and DEVELOPERS.md): {missing}"


def test_no_module_imports_a_later_layer():
    layer = _layer_of()
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        if me not in layer:
            continue
        for line, dep in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if dep.startswith("<"):
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {dep[1:-1]} import of gptir")
            elif dep not in layer:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: imports unknown module {dep}")
            elif layer[dep] > layer[me] and dep != me and (me, dep) not in CALL_TIME_UPWARD:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {me} (layer {layer[me]}) imports {dep} "
                           f"(layer {layer[dep]})")
    assert bad == []


def test_the_checker_sees_upward_and_hidden_imports():
    src = ("from gptir import tracing\nimport gptir.passes as P\nfrom gptir import trace\n"
           "def f():\n    from gptir.codegen import plan\n    importlib.import_module('gptir.x')\n"
           "if TYPE_CHECKING:\n    from gptir.model import GPTConfig\n")
    assert _runtime_imports(ast.parse(src)) == [(1, "tracing"), (2, "passes"), (3, "__init__"), (5, "codegen"),
                                                (6, "<importlib>")]


def test_modules_import_in_layer_order():
    for layer in LAYERS:
        for name in layer:
            if name == "__main__":  # importing it runs the command line
                continue
            importlib.import_module("gptir" if name == "__init__" else f"gptir.{name}")


def test_the_tracing_function_does_not_shadow_a_module():
    import gptir
    import gptir.tracing

    assert callable(gptir.trace) and gptir.trace is gptir.tracing.trace
    assert not (PKG / "trace.py").exists()
    assert gptir.tracing.__name__ == "gptir.tracing"
