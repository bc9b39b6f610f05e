"""The package's layout: no import cycles (module-level or inside functions), widgets only in
apps/, no argument parsing in the compute folders."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "drfhq_lib"
COMPUTE = ("data", "infer", "finetune", "nets", "eval")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Every module imported anywhere in ``name`` (top level and inside functions), as
    absolute names; ``from pkg import mod`` counts as importing pkg.mod when that is a module."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name in MODULES:
        targets = set()
        for imported in _imports(name):
            # importing a.b.c runs a/__init__, a.b/__init__ and a.b.c
            parts = imported.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & set(MODULES)
        graph[name] = targets - {name}
    return graph


def _cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_graph_sees_function_level_imports():
    assert "drfhq_lib.data.align_job" in _graph()["drfhq_lib.commands.align"]  # inside run()
    assert _cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]


def test_no_import_cycles():
    graph = {n: {t for t in targets if not n.startswith(t + ".") and not t.startswith(n + ".")}
             for n, targets in _graph().items()}  # a package and its own modules: not a cycle
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_align_and_dataset_do_not_import_each_other():
    graph = _graph()
    assert "drfhq_lib.data.dataset" not in graph["drfhq_lib.data.align"]
    assert "drfhq_lib.data.align" not in graph["drfhq_lib.data.dataset"]
    assert "drfhq_lib.data.align_job" not in graph["drfhq_lib.data.align"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_widgets_only_in_apps(name):
    if name.startswith("drfhq_lib.apps"):
        return
    assert not {i for i in _imports(name) if i.split(".")[0] == "ipywidgets"}, name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[1:2] and
                                        n.split(".")[1] in COMPUTE))
def test_compute_modules_parse_no_arguments(name):
    """No argparse in compute modules, except ``argparse.Namespace`` as an allowed class when
    unpickling checkpoints that contain one (rosinality's): that reads data, it parses no
    command line."""
    tree = ast.parse(MODULES[name].read_text())
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == "argparse"}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
             and n.module == "argparse" for a in n.names}
    calls = {n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute)} & {"add_argument", "add_parser", "parse_args"}
    assert used <= {"Namespace"} and not calls, \
        f"{name} uses argparse ({sorted(used | calls)}): the CLI belongs in drfhq_lib.commands"
    if "argparse" in _imports(name):
        assert used, f"{name} imports argparse without using it"


def test_every_command_module_is_registered():
    from drfhq_lib import cli

    commands = {n for n in MODULES if n.startswith("drfhq_lib.commands.")} - {
        "drfhq_lib.commands.options"}
    assert commands == set(cli.COMMAND_MODULES)
