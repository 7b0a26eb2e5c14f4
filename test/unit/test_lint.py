"""The house style is checked, not hoped for: ruff with the project's pyproject.toml over the whole tree."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_the_tree_passes_ruff():
    done = ruff(".")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_fails_on_a_planted_violation(tmp_path):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "clean.py").write_text('"""Fine."""\nimport os\n\nprint(os.sep)\n')
    assert ruff(".", cwd=tmp_path).returncode == 0
    (tmp_path / "planted.py").write_text("import os\nimport sys\n\nprint(sys.argv, '" + "x" * 120 + "')\n")
    done = ruff(".", cwd=tmp_path)
    assert done.returncode == 1
    assert "planted.py" in done.stdout and "F401" in done.stdout and "E501" in done.stdout
