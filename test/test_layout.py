"""charm_ros's rooms: the runtime and message layers work without rclpy, and the README's parameter
table is the ParamSpec table."""
import pkgutil
import subprocess
import sys

import charm_ros.msgs
import charm_ros.runtime
from charm_ros.paths import share_path
from charm_ros.runtime.node_config import PARAMETERS
from charm_ros.tools.param_table import render

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


def test_runtime_and_msgs_import_with_rclpy_unimportable():
    modules = _modules(charm_ros.runtime) + _modules(charm_ros.msgs)
    assert "charm_ros.runtime.engine" in modules and "charm_ros.msgs.outputs" in modules
    done = subprocess.run([sys.executable, "-c", BLOCK_RCLPY, *modules], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ok", str(len(modules))]


def test_the_blocker_itself_refuses_rclpy():
    done = subprocess.run([sys.executable, "-c", BLOCK_RCLPY, "charm_ros.node"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "rclpy" in done.stderr


def test_readme_parameter_table_is_the_spec_table():
    readme = share_path("README.md").read_text()
    assert render(readme) == readme, "README out of date: run python -m charm_ros.tools.param_table"
    for spec in PARAMETERS:
        assert f"| `{spec.name}` |" in readme
