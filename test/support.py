"""Paths both test folders use (a plain module: test files import it, pytest does not collect it)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]   # the repository
DATA = ROOT / "test" / "data"
