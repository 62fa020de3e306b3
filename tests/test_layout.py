"""The package's import graph: no circles, and no module imports from a layer above its own (README "Layout")."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# bottom to top; a module's layer is that of its longest matching prefix
LAYERS = {"mnas.errors": 0, "mnas.workers": 0, "mnas.cli": 0, "mnas.nn": 1, "mnas.data": 1, "mnas.rundir": 1,
          "mnas.train": 2, "mnas.latency": 2, "mnas.supernet": 3, "mnas.search": 4, "mnas.prune": 4, "mnas.export": 4,
          "mnas.compare": 5, "mnas.pipeline": 5, "mnas.search.rerank": 5, "mnas.search.__main__": 6, "mnas.bench": 6,
          "mnas.latency.__main__": 6, "mnas.supernet.__main__": 6, "mnas": 7}


def layer(module: str) -> int:
    return LAYERS[max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)]


def modules() -> dict:
    out = {}
    for p in sorted((ROOT / "mnas").rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(mods: dict) -> dict:
    """module -> the mnas modules it imports, at the top or inside functions."""
    def resolve(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name
    edges = {}
    for m, p in mods.items():
        out = set()
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("mnas"):
                out |= {resolve(f"{n.module}.{a.name}") for a in n.names}
            elif isinstance(n, ast.Import):
                out |= {resolve(a.name) for a in n.names if a.name.startswith("mnas")}
        edges[m] = out - {m, ""}
    return edges


def upward(edges: dict) -> list:
    return [(a, b) for a, bs in edges.items() for b in bs if b != "mnas" and layer(b) > layer(a)]


def circle(edges: dict) -> list | None:
    """The first import circle found (depth-first), as a list of modules, or None."""
    seen, path = set(), []

    def visit(m):
        if m in path:
            return path[path.index(m):] + [m]
        if m in seen:
            return None
        path.append(m)
        for n in sorted(edges.get(m, ())):
            if found := visit(n):
                return found
        path.pop()
        seen.add(m)
        return None

    for m in sorted(edges):
        if found := visit(m):
            return found
    return None


def test_no_upward_imports():
    edges = imports(modules())
    assert "mnas.nn.arch" in edges["mnas.nn.models"]  # the imports are read at all
    assert not upward(edges), f"imports from a higher layer: {upward(edges)}"
    assert not [a for a, bs in edges.items() if "mnas" in bs], "nothing inside the package imports mnas/__init__"


def test_no_import_circles():
    assert circle(imports(modules())) is None


def test_the_checks_catch_a_circle_and_an_upward_import():
    assert circle({"mnas.nn.a": {"mnas.nn.b"}, "mnas.nn.b": {"mnas.nn.c"}, "mnas.nn.c": {"mnas.nn.a"}}) == [
        "mnas.nn.a", "mnas.nn.b", "mnas.nn.c", "mnas.nn.a"]
    assert upward({"mnas.nn.space": {"mnas.latency.table"}}) == [("mnas.nn.space", "mnas.latency.table")]
    assert upward({"mnas.search.study": {"mnas.nn.space"}}) == []
