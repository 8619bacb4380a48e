"""A model repository in Triton's layout.

::

    REPOSITORY/
      resnet/
        config.pbtxt          (optional; read by ortgpu.serving.config)
        1/model.onnx
        2/model.onnx
      bert/
        1/model.onnx

Every folder of REPOSITORY is a model, every folder of a model named by a positive integer is a
version of it. Which versions are served follows the config's ``version_policy`` (Triton's
default: the latest one). Model names come from folder names only, and a name is turned back
into a path only through :meth:`Repository.model_dir`, which refuses anything that is not a
plain folder name inside the repository, so a URL cannot reach outside it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from .errors import RepositoryError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
DEFAULT_MODEL_FILENAME = "model.onnx"


def check_model_name(name: str) -> str:
    """Return `name` when it is a plain model name (letters, digits, ``_ . -``, not ``.``/``..``)."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise RepositoryError(f"invalid model name {name!r}: expected letters, digits, '_', '.' or '-' "
                              "and no path separators")
    return name


@dataclass
class ModelEntry:
    """One model folder: its name, folder, the versions found on disk and the config file if any."""
    name: str
    path: str
    versions: dict[int, str] = field(default_factory=dict)  # version -> version folder
    config_path: str | None = None


class Repository:
    """The models of a Triton-layout folder (scanned on construction and by :meth:`rescan`)."""

    def __init__(self, root: str | os.PathLike):
        self.root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(self.root):
            raise RepositoryError(f"model repository {os.fspath(root)!r} is not a folder")
        self.models: dict[str, ModelEntry] = {}
        self.rescan()

    def rescan(self) -> None:
        """Read the folder again (new models, new versions)."""
        found = {}
        for name in sorted(os.listdir(self.root)):
            if _NAME.match(name) and os.path.isdir(os.path.join(self.root, name)):
                try:
                    found[name] = self.entry(name)
                except RepositoryError:
                    continue  # a symlink leaving the repository: not a model of it
        self.models = found

    def model_dir(self, name: str) -> str:
        """The folder of model `name`; refuses names that are not plain folder names and folders
        that resolve (through symlinks) outside the repository."""
        check_model_name(name)
        path = os.path.realpath(os.path.join(self.root, name))
        if os.path.dirname(path) != self.root:
            raise RepositoryError(f"model {name!r} resolves outside the repository {self.root!r}")
        if not os.path.isdir(path):
            raise RepositoryError(f"model {name!r} not found in repository {self.root!r}")
        return path

    def entry(self, name: str) -> ModelEntry:
        """Scan one model folder."""
        path = self.model_dir(name)
        entry = ModelEntry(name, path)
        for child in os.listdir(path):
            full = os.path.join(path, child)
            if child.isdigit() and int(child) > 0 and os.path.isdir(full):
                entry.versions[int(child)] = full
        config = os.path.join(path, "config.pbtxt")
        entry.config_path = config if os.path.isfile(config) else None
        return entry


def select_versions(available: list[int], policy: str = "latest", num_versions: int = 1,
                    specific: tuple[int, ...] = ()) -> list[int]:
    """Triton's version policies: the `num_versions` highest (``latest``), ``all``, or ``specific``."""
    ordered = sorted(available)
    if policy == "all":
        return ordered
    if policy == "specific":
        return [v for v in ordered if v in set(specific)]
    if policy != "latest":
        raise RepositoryError(f"unknown version policy {policy!r}: expected latest, all or specific")
    return ordered[-max(1, num_versions):]


def model_file(version_dir: str, filename: str = DEFAULT_MODEL_FILENAME) -> str:
    """The ONNX file of one version folder; `filename` is the config's ``default_model_filename``."""
    if os.path.basename(filename) != filename or filename in (".", ".."):
        raise RepositoryError(f"default_model_filename {filename!r} must be a plain file name")
    path = os.path.join(version_dir, filename)
    if not os.path.isfile(path):
        raise RepositoryError(f"{path!r} not found: each version folder holds {filename!r}")
    return path
