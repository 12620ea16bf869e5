"""The package layout is the architecture: imports run one way, downward through the layers,
with no cycles. The import graph is read from the source (ast; nothing is imported or run),
so a cycle, an upward import or a module outside every layer fails here, not in review.

The layers, lowest first (a module may import its own layer and the ones below):

    contract   bokehkit_plugin: schema, rawbuffer, config, jobs, edits (standard library only)
    host       bokehkit_plugin: client, remote, settings, install, ui (the plug-ins' side)
    base       bokehkit: errors, progress, limits, processes, onnxtools
    io         bokehkit.io: image files, colour, orientation, maps, raw buffers
    store      bokehkit.store: the model store and its downloads
    scene      bokehkit.scene: depth, phone depth, depth models, subject, focus, optics
    networks   bokehkit.sr, bokehkit.magicbokeh: the learned models' code
    render     bokehkit.render: the renderers and what they apply (highlights, grain...)
    pipeline   bokehkit.pipeline: image → focus → depth → optics → render → SR → image;
               bokehkit.options: the render options as command-line words
    serve      bokehkit.serve: the engine side of the plug-in protocol
    commands   bokehkit.commands, bokehkit.__main__: the command line
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = {
    "bokehkit": REPO / "core" / "bokehkit",
    "bokehkit_plugin": REPO / "plugin" / "bokehkit_plugin",
}

CONTRACT = ("bokehkit_plugin.schema", "bokehkit_plugin.rawbuffer", "bokehkit_plugin.config",
            "bokehkit_plugin.jobs", "bokehkit_plugin.edits", "bokehkit_plugin")  # fmt: skip
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("contract", CONTRACT),
    (
        "host",
        (
            "bokehkit_plugin.client",
            "bokehkit_plugin.remote",
            "bokehkit_plugin.settings",
            "bokehkit_plugin.install",
            "bokehkit_plugin.ui",
        ),
    ),  # fmt: skip
    (
        "base",
        (
            "bokehkit",
            "bokehkit.errors",
            "bokehkit.progress",
            "bokehkit.limits",
            "bokehkit.processes",
            "bokehkit.onnxtools",
        ),
    ),  # fmt: skip
    ("io", ("bokehkit.io",)),
    ("store", ("bokehkit.store",)),
    ("scene", ("bokehkit.scene",)),
    ("networks", ("bokehkit.sr", "bokehkit.magicbokeh")),
    ("render", ("bokehkit.render",)),
    ("pipeline", ("bokehkit.pipeline", "bokehkit.options")),
    ("serve", ("bokehkit.serve",)),
    ("commands", ("bokehkit.commands", "bokehkit.__main__")),
)
#: Known exceptions, each with its reason. Keep this short; moving the code is the fix.
ALLOWED_UPWARD = {
    # Importing a depth checkpoint the manifest does not pin, the store checks that the file
    # is the network it claims (tensor names and shapes, read without torch).
    ("bokehkit.store.store", "bokehkit.scene.depth_models.specs"),
    ("bokehkit.store.store", "bokehkit.scene.depth_models.inspect"),
}
#: What may reach into the plug-ins' side from the engine: the dialog GIMP asks the engine
#: to show (serve), and the installer behind `bokehkit install-plugins` (commands).
HOST_IMPORTERS = ("bokehkit.serve", "bokehkit.commands")
#: Renderers work on arrays: no file reading or writing.
FILE_IO = ("bokehkit.io.image", "bokehkit.io.maps", "bokehkit.io.rawbuffer", "PIL.Image")


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for top, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [top, *path.relative_to(folder).with_suffix("").parts]
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imports(name: str, path: Path, is_pkg: bool, modules: dict) -> set[str]:
    """Every module `name` imports, at any depth of the file (lazy imports count)."""
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                # `from package import module` imports that module (the package's own
                # __init__ runs first, as for every submodule, and is not counted)
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in modules else module)
    return found


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(edges between our modules, every import by name) for each of our modules."""
    modules = _modules()
    edges, raw = {}, {}
    for name, (path, is_pkg) in modules.items():
        imported = _imports(name, path, is_pkg, modules)
        raw[name] = imported
        ours = set()
        for target in imported:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                ours.add(target)
        edges[name] = ours
    return edges, raw


def _layer(module: str) -> int | None:
    best, rank = -1, None
    for i, (_, rooms) in enumerate(LAYERS):
        for room in rooms:
            if (module == room or module.startswith(room + ".")) and len(room) > best:
                best, rank = len(room), i
    return rank


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_belongs_to_a_layer():
    lost = sorted(m for m in _modules() if _layer(m) is None)
    assert not lost, f"modules outside every layer (add them to LAYERS or move them): {lost}"


def test_no_import_cycles():
    edges, _ = _graph()
    cycles = _cycles(edges)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_imports_run_downward():
    edges, _ = _graph()
    upward = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            low, high = _layer(target), _layer(source)
            if low is not None and high is not None and low > high:
                if (source, target) not in ALLOWED_UPWARD:
                    upward.append(f"{source} ({LAYERS[high][0]}) -> {target} ({LAYERS[low][0]})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def test_the_engine_reaches_the_plugin_side_only_from_serve_and_commands():
    edges, _ = _graph()
    bad = [
        f"{source} -> {target}"
        for source, targets in sorted(edges.items())
        if source.startswith("bokehkit.") and not source.startswith(HOST_IMPORTERS)
        for target in sorted(targets)
        if target.startswith("bokehkit_plugin") and _layer(target) != 0
    ]
    assert not bad, "engine modules that import the plug-ins' side:\n" + "\n".join(bad)


def test_the_contract_is_standard_library_only():
    _, raw = _graph()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    bad = [
        f"{module} imports {name}"
        for module, names in sorted(raw.items())
        if _layer(module) == 0
        for name in sorted(names)
        if name and name.split(".")[0] not in stdlib and not name.startswith("bokehkit_plugin")
    ]
    assert not bad, "\n".join(bad)


def test_renderers_do_no_file_io():
    _, raw = _graph()
    bad = [
        f"{module} imports {name}"
        for module, names in sorted(raw.items())
        if module.startswith("bokehkit.render")
        for name in sorted(names)
        if name.startswith(FILE_IO)
    ]
    assert not bad, "renderers work on arrays; file I/O belongs above them:\n" + "\n".join(bad)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    """The test's own machinery, on a made-up graph."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("bokehkit.render.classical") > _layer("bokehkit.scene.depth")
    assert _layer("bokehkit_plugin.ui.panel") == 1 and _layer("bokehkit_plugin.schema") == 0
