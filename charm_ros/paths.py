"""Where the package's data files (config/, launch/, models/) live, in a source tree or a colcon install."""
from __future__ import annotations

from pathlib import Path

PACKAGE = "charm_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def share_dir() -> Path:
    """The source checkout when running from it (pip -e), else the ament share directory."""
    if (_SOURCE_ROOT / "package.xml").is_file():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except Exception as exc:  # ament_index raises its own PackageNotFoundError
        raise FileNotFoundError(f"cannot locate the {PACKAGE} share directory: {exc}") from exc


def share_path(*parts: str) -> Path:
    """A file under the share directory, e.g. share_path('config', 'fastdds.xml')."""
    return share_dir().joinpath(*parts)
