"""The repository's models as KServe sees them: a ``kserve.ModelRepository`` whose load/unload
read the Triton-layout folder, with every served version kept by number.

KServe's registry knows one model per name (the highest served version, which answers requests
without a version); :meth:`OrtgpuRegistry.resolve` finds any served version.
"""
from __future__ import annotations

import logging

from kserve.errors import ModelNotFound
from kserve.model_repository import ModelRepository

from .config import ServingConfig, parse_config
from .errors import ModelLoadError, RepositoryError
from .kserve_model import OrtgpuModel
from .repository import Repository, check_model_name, model_file, select_versions
from .runner import ModelRunner, RunnerSettings

log = logging.getLogger("ortgpu.serving")


class OrtgpuRegistry(ModelRepository):
    """Models of `repository`, loaded with `settings`; `on_batch(model, requests, items)` is called
    per batch run (the Prometheus counters)."""

    def __init__(self, repository: Repository, settings: RunnerSettings | None = None, on_batch=None):
        super().__init__(repository.root)
        self.repository = repository
        self.settings = settings or RunnerSettings()
        self.on_batch = on_batch
        self.versions: dict[str, dict[int, OrtgpuModel]] = {}
        self.errors: dict[str, str] = {}   # model name -> why it has no version at all

    def load_models(self) -> None:
        """Load every model of the repository; failures leave that model not ready."""
        for name in self.repository.models:
            self.load(name)

    def load(self, name: str) -> bool:
        """(Re)load model `name` from its folder; True when its default version is ready."""
        try:
            entry = self.repository.entry(name)
        except RepositoryError as e:
            raise ModelNotFound(check_safe(name)) from e
        self._drop(name)
        try:
            config = _read_config(entry.config_path)
            served = select_versions(list(entry.versions), config.version_policy, config.num_versions,
                                     config.specific_versions)
            if not served:
                raise ModelLoadError(f"model {name}: no version folder (1/, 2/, ...) holding a model "
                                     "under the version policy")
        except (ModelLoadError, RepositoryError) as e:
            self.errors[name] = str(e)
            self.update(_FailedModel(name, str(e)), name)
            log.error("%s", e)
            return False
        self.errors.pop(name, None)
        models = {}
        for version in served:
            model = OrtgpuModel(name, version, self._factory(name, version, entry.versions[version], config))
            model.load()
            models[version] = model
        self.versions[name] = models
        self.update(models[max(models)], name)
        return models[max(models)].ready

    def _factory(self, name: str, version: int, folder: str, config: ServingConfig):
        def build():
            path = model_file(folder, config.model_filename)
            on_batch = None if self.on_batch is None else (
                lambda requests, items: self.on_batch(name, requests, items))
            return ModelRunner(name, version, path, config, self.settings, on_batch)
        return build

    def _drop(self, name: str) -> None:
        for model in self.versions.pop(name, {}).values():
            model.stop()
        self.models.pop(name, None)

    def unload(self, name: str) -> None:
        if name not in self.models:
            raise ModelNotFound(check_safe(name))
        self._drop(name)

    def resolve(self, name: str, version: str | None = None):
        """The model serving `name` at `version` (None: the default); ModelNotFound otherwise."""
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(check_safe(name))
        if version in (None, ""):
            return model
        try:
            number = int(version)
        except ValueError:
            raise ModelNotFound(f"{check_safe(name)} version {version!r}") from None
        found = self.versions.get(name, {}).get(number)
        if found is None:
            served = sorted(self.versions.get(name, {}))
            raise _VersionNotFound(name, version, served)
        return found

    def stop_all(self) -> None:
        """Drain and stop every model (SIGTERM)."""
        for name in list(self.versions):
            for model in self.versions[name].values():
                model.stop()


class _VersionNotFound(ModelNotFound):
    def __init__(self, name: str, version: str, served: list[int]):
        super().__init__(name)
        self.reason = f"Model {name} has no served version {version}; served versions: {served}"


class _FailedModel(OrtgpuModel):
    """A model whose folder or config could not be read: registered so it is reported not ready."""

    def __init__(self, name: str, error: str):
        super().__init__(name, 0, None)
        self.load_error = error

    def load(self, retry: bool = False) -> bool:
        return False


def _read_config(path: str | None) -> ServingConfig:
    if path is None:
        return ServingConfig()
    with open(path, encoding="utf-8") as f:
        return parse_config(f.read(), where=path)


def check_safe(name: str) -> str:
    """`name` for an error message: itself when plain, else its repr (never a path)."""
    try:
        return check_model_name(name)
    except RepositoryError:
        return repr(name)
