"""pyproject lists every package of the tree, so a plain (non-editable) install is complete."""
import os

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = os.path.join(os.path.dirname(__file__), "..")
# top-level folder -> the package name it installs as
MAPPING = {"ortgpu": "ortgpu", "providers": "ortgpu.providers", "memory": "ortgpu.memory",
           "profiling": "ortgpu.profiling"}


def _pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for top, name in MAPPING.items():
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            if "__init__.py" in files:
                rel = os.path.relpath(folder, os.path.join(ROOT, top))
                found.add(name if rel == "." else name + "." + rel.replace(os.sep, "."))
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def test_package_dirs_map_the_top_level_folders():
    dirs = _pyproject()["tool"]["setuptools"]["package-dir"]
    for top, name in MAPPING.items():
        assert dirs[name] == top
