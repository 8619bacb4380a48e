"""Serving errors that do not depend on any server library.

The KServe layer (:mod:`ortgpu.serving.kserve_model`) maps them to the protocol's status codes:
``BadRequest`` -> 400 / INVALID_ARGUMENT, ``QueueFull`` -> 503 / UNAVAILABLE,
``ModelLoadError`` -> the model is reported not ready.
"""


class ServingError(Exception):
    """Base class of the errors of ortgpu.serving."""


class BadRequest(ServingError):
    """A request that can never succeed as sent: wrong input name, datatype, shape or data size."""


class QueueFull(ServingError):
    """The model's request queue is at its bound; the client should retry later (503)."""


class ModelLoadError(ServingError):
    """A model of the repository could not be loaded; it is served as not ready."""


class RepositoryError(ServingError):
    """The repository layout or a model name is invalid (for instance a name leaving the folder)."""
