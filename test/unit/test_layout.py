"""The package's rooms: which layer may import what, no import circle, rclpy only in the ROS layer, and
the README's parameter table is the ParamSpec table."""
import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import charm_ros.bags
import charm_ros.msgs
import charm_ros.runtime
from charm_ros.paths import share_path
from charm_ros.runtime.node_config import PARAMETERS
from charm_ros.tools.param_table import render, tables
from support import ROOT


PACKAGES = ("charm_core", "charm_ros")
ROS_LAYER = ("charm_ros.node", "charm_ros.tools")  # the only rooms that may import rclpy

BLOCK_RCLPY = """
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "rclpy" or name.startswith("rclpy."):
            raise ImportError(f"{name} is blocked: this layer must not import rclpy")
sys.meta_path.insert(0, Block())
for name in sys.argv[1:]:
    importlib.import_module(name)
assert not any(m == "rclpy" or m.startswith("rclpy.") for m in sys.modules), "rclpy was imported"
print("ok", len(sys.argv) - 1)
"""


def _modules(package) -> list[str]:
    return [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__)]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the two packages (a package is its __init__)."""
    out = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, at module level or inside functions (absolute dotted names)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
            found.add(base)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Module -> the package modules it imports (`from pkg import name` counts as pkg.name when that is a
    module, else as pkg)."""
    files = module_files(root)

    def owner(target: str) -> str | None:
        while target and target not in files:
            target = target.rpartition(".")[0]
        return target or None

    graph = {}
    for name, path in files.items():
        targets = {owner(t) for t in imports_of(path, name)}
        graph[name] = {t for t in targets if t and t != name and not name.startswith(t + ".")}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_a_planted_circle(tmp_path):
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "charm_ros" / "a.py").write_text("from charm_ros.b import x\n")
    (tmp_path / "charm_ros" / "b.py").write_text("def f():\n    from charm_ros import a\n")
    (tmp_path / "charm_core" / "c.py").write_text("import charm_core\n")
    assert circles(import_graph(tmp_path)) == [["charm_ros.a", "charm_ros.b"]]


def test_layers_import_in_one_direction():
    graph = import_graph()
    core_to_ros = {m: sorted(t for t in ts if t.startswith("charm_ros")) for m, ts in graph.items()
                   if m.startswith("charm_core")}
    assert {m: ts for m, ts in core_to_ros.items() if ts} == {}, "charm_core never imports charm_ros"
    msgs_to_runtime = {m: sorted(t for t in ts if t.startswith("charm_ros.runtime")) for m, ts in graph.items()
                       if m.startswith("charm_ros.msgs")}
    assert {m: ts for m, ts in msgs_to_runtime.items() if ts} == {}, "msgs/ imports nothing of runtime/"
    library_to_commands = {m: sorted(t for t in ts if t.startswith(ROS_LAYER)) for m, ts in graph.items()
                           if not m.startswith(ROS_LAYER)}
    assert {m: ts for m, ts in library_to_commands.items() if ts} == {}, "only node/ and tools/ use node/ and tools/"


def test_only_the_ros_layer_imports_rclpy():
    files = module_files()
    users = sorted(m for m, path in files.items()
                   if any(t == "rclpy" or t.startswith("rclpy.") for t in imports_of(path, m)))
    assert users and all(m.startswith(ROS_LAYER) for m in users), [m for m in users if not m.startswith(ROS_LAYER)]


def test_charm_ros_top_level_holds_only_the_package_env_and_paths():
    loose = sorted(p.name for p in (ROOT / "charm_ros").glob("*.py"))
    assert loose == ["__init__.py", "env.py", "paths.py"]


def test_runtime_msgs_and_bags_import_with_rclpy_unimportable():
    modules = _modules(charm_ros.runtime) + _modules(charm_ros.msgs) + _modules(charm_ros.bags)
    assert "charm_ros.runtime.engine" in modules and "charm_ros.bags.evaluator" in modules
    done = subprocess.run([sys.executable, "-c", BLOCK_RCLPY, *modules], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", str(len(modules))]


def test_the_blocker_itself_refuses_rclpy():
    done = subprocess.run([sys.executable, "-c", BLOCK_RCLPY, "charm_ros.node.charm_node"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "rclpy" in done.stderr


def test_generated_parameter_tables_are_the_spec_tables():
    for document, generated in tables().items():
        text = share_path(document).read_text()
        assert render(text, document) == text, f"{document} out of date: run python -m charm_ros.tools.param_table"
        for specs in generated.values():
            assert all(f"| `{spec.name}` |" in text for spec in specs)
    readme = share_path("README.md").read_text()
    assert all(f"| `{spec.name}` |" in readme for spec in PARAMETERS)


def test_unit_tests_use_no_dds_and_test_file_names_are_unique():
    """test/unit/ runs without DDS (no node, no ROS process: those tests belong in test/integration/, whose
    conftest.py alone has the DDS fixtures); pytest's prepend import mode needs unique test file names."""
    dds_words = ["rclpy" + ".init", "create" + "_node(", "rclpy" + "_node", "child" + "_env", "Launcher" + "("]
    unit = sorted((ROOT / "test" / "unit").glob("*.py"))
    offenders = {p.name: [w for w in dds_words if w in p.read_text()] for p in unit}
    assert {name: words for name, words in offenders.items() if words} == {}
    names = [p.name for p in (ROOT / "test").rglob("test_*.py")]
    assert len(unit) > 30 and sorted(n for n in set(names) if names.count(n) > 1) == []
