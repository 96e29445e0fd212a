"""The project's own imports, read from the source with ast (nothing is imported): no import circle among
app.py, preprocess.py and model/ (what two modules share lives in a third), and no private name
(a leading underscore) taken from another of them. Imports inside functions count too: a lazy import
hides a circle from Python, not from a reader."""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def module_name(path: Path, root: Path = REPO) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = REPO) -> dict[str, Path]:
    files = [root / "app.py", root / "preprocess.py", *sorted((root / "model").rglob("*.py"))]
    return {module_name(p, root): p for p in files if p.exists()}


def imports(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, str, int]]:
    """(imported project module, name taken from it or "", line) for every import of `path`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, "", node.lineno) for a in node.names if a.name in modules]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                if f"{base}.{a.name}" in modules:   # `from model.audio import numba_cache`: a module
                    out.append((f"{base}.{a.name}", "", node.lineno))
                elif base in modules:
                    out.append((base, a.name, node.lineno))
    return out


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or of one that imports itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    return {name: {m for m, _, _ in imports(name, path, modules)} for name, path in modules.items()}


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(modules: dict[str, Path]) -> list[str]:
    """`from module import _name`, and `module._name` where `module` names another project module
    (`from model.audio import decoding`, `import model.audio.decoding as decoding`)."""
    found = []
    for name, path in modules.items():
        where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        found += [f"{where}:{line} takes {taken} from {m}" for m, taken, line in imports(name, path, modules)
                  if private(taken) and m != name]
        aliases = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for a in node.names:
                    full = a.name if isinstance(node, ast.Import) else f"{node.module}.{a.name}"
                    if full in modules and full != name and (a.asname or isinstance(node, ast.ImportFrom)):
                        aliases[a.asname or a.name] = full
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and private(node.attr):
                found.append(f"{where}:{node.lineno} takes {node.attr} from {aliases[node.value.id]}")
    return found


def test_no_import_circle():
    found = circles(import_graph(project_modules()))
    assert not found, ("import circles (move what both sides share into a module both import): "
                       + "; ".join(" <-> ".join(c) for c in found))


def test_no_private_name_crosses_modules():
    found = private_imports(project_modules())
    assert not found, "private names imported from another module:\n" + "\n".join(found)


def test_the_checks_see_circles_and_private_names(tmp_path):
    """The two checks on a made-up package: a circle through a lazy import, a relative import, and a
    private name; and a clean package passes."""
    (tmp_path / "model" / "audio").mkdir(parents=True)
    for f in ("model/__init__.py", "model/audio/__init__.py", "app.py", "preprocess.py"):
        (tmp_path / f).write_text("")
    (tmp_path / "model" / "audio" / "a.py").write_text("from model.audio.b import B\n_secret = 1\n")
    (tmp_path / "model" / "audio" / "b.py").write_text("def f():\n    from .a import _secret\n")
    (tmp_path / "model" / "audio" / "c.py").write_text("from model.audio import a\nimport model.audio.b\nx = a._secret\n")
    modules = {module_name(p, tmp_path): p for p in [tmp_path / "app.py", *sorted((tmp_path / "model").rglob("*.py"))]}
    graph = import_graph(modules)
    assert graph["model.audio.c"] == {"model.audio.a", "model.audio.b"}
    assert circles(graph) == [["model.audio.a", "model.audio.b"]]
    assert [p.split(" takes ")[1] for p in private_imports(modules)] == ["_secret from model.audio.a"] * 2
    (tmp_path / "model" / "audio" / "b.py").write_text("B = 2\n")
    (tmp_path / "model" / "audio" / "c.py").write_text("from model.audio import a\nx = a.B\n")
    modules = {module_name(p, tmp_path): p for p in [tmp_path / "app.py", *sorted((tmp_path / "model").rglob("*.py"))]}
    assert circles(import_graph(modules)) == [] and private_imports(modules) == []
