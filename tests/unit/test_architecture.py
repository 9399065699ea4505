"""The package's import structure, read from the source (function-local imports included): imports point
down the layers of docs/architecture.md, there is no import circle, and no private name crosses a
module boundary."""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(60)

PACKAGES = ("megatron_octo", "tokenization")
SCRIPTS = ("tools", "benchmarks")

# The layers, bottom first (docs/architecture.md): a module may import only from its own layer or below.
# The first matching prefix decides; the checkpoint modules sit below models (they read files, not models).
LAYERS = [
    ("config", ["megatron_octo.config"]),
    ("runtime", ["megatron_octo.runtime"]),
    ("tokenization", ["tokenization"]),
    ("data", ["megatron_octo.data"]),
    ("checkpoint", ["megatron_octo.checkpoint"]),
    ("models", ["megatron_octo.models"]),
    ("training", ["megatron_octo.training", "megatron_octo.schedule", "megatron_octo.planner"]),
    ("inference", ["megatron_octo.generation", "megatron_octo.generation_dynamic", "megatron_octo.generators"]),
    ("rl, eval", ["megatron_octo.rl", "megatron_octo.eval"]),
    ("entry points", ["megatron_octo.cli", "megatron_octo.train", "megatron_octo.demo", "megatron_octo.rl_demo",
                      "megatron_octo.pipeline", "megatron_octo"]),
]


def layer(module: str) -> int:
    """The layer index of ``module`` (the longest matching prefix wins: rl_demo is not rl)."""
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best[0]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _ours(name: str):
    """The module of ours that ``name`` (a module or module.attribute) lives in, or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(path: Path, module: str):
    """(imported module of ours, imported names, line) for every import statement, function-local ones included."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _ours(alias.name):
                    yield _ours(alias.name), [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts[:len(parts) - node.level + (1 if is_pkg else 0)]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = _ours(f"{base}.{alias.name}") or _ours(base)
                if target:
                    yield target, [alias.name], node.lineno


def _graph() -> dict[str, set[str]]:
    edges = defaultdict(set)
    for module, path in MODULES.items():
        for target, _, _ in _imports(path, module):
            if target != module and not module.startswith(target + "."):  # a package's own __init__
                edges[module].add(target)
    return edges


def _circles(edges) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(set(edges) | {w for ws in edges.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_private_name_is_imported_across_modules():
    files = dict(MODULES)
    for folder in SCRIPTS:
        files.update({str(p.relative_to(ROOT)): p for p in (ROOT / folder).glob("*.py")})
    offenders = [f"{path.relative_to(ROOT)}:{line}: {name} from {target}"
                 for module, path in files.items() for target, names, line in _imports(path, module)
                 for name in names if name.startswith("_") and not name.startswith("__") and target != module]
    assert offenders == []


def test_imports_point_down_the_layers():
    up = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
          for m, targets in sorted(_graph().items()) for t in sorted(targets) if layer(t) > layer(m)]
    assert up == [], "an import points up the layer order of docs/architecture.md"


def test_no_import_circle():
    assert [sorted(c) for c in _circles(_graph())] == []


def test_the_checker_sees_a_circle():
    """The checker itself: two modules importing each other form a circle; a chain does not."""
    assert _circles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [{"a", "b"}]
    assert _circles({"a": {"b"}, "b": {"c"}}) == []
    assert layer("megatron_octo.rl_demo") > layer("megatron_octo.rl.trainer") > layer("megatron_octo.config")
    assert layer("megatron_octo.checkpoint.integrity") < layer("megatron_octo.models.hf_io")


def _import_runs(fn):
    """Runs of consecutive import statements inside a function (a '# lazy:' comment covers its run)."""
    for node in ast.walk(fn):
        for field in ("body", "orelse", "finalbody"):
            run = []
            stmts = getattr(node, field, None)
            for stmt in stmts if isinstance(stmts, list) else []:
                if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                    run.append(stmt)
                    continue
                if run:
                    yield run
                run = []
            if run:
                yield run


def test_function_local_imports_of_our_modules_say_why():
    """Our own modules are imported at the top of a module; a function-local import is kept only where a heavy
    dependency justifies it (megatron-core loaded only when needed, so config errors and --help stay fast;
    a benchmark's torch loaded after it sets OMP_NUM_THREADS), and says so in a '# lazy: ...' comment on the
    run of imports it belongs to or the line above it."""
    files = dict(MODULES)
    for folder in SCRIPTS:
        files.update({str(p.relative_to(ROOT)): p for p in (ROOT / folder).glob("*.py")})
    offenders = []
    for module, path in files.items():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines), str(path))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for run in _import_runs(fn):
                said = "\n".join(lines[run[0].lineno - 2:run[-1].end_lineno])
                for node in run:
                    names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                             else ["." * node.level + (node.module or "")])
                    ours = any(n.startswith(".") or n.split(".")[0] in PACKAGES for n in names)
                    if ours and "# lazy:" not in said:
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert offenders == [], "function-local imports without a '# lazy:' reason:\n" + "\n".join(offenders)
