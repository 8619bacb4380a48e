"""Every public name of onnxruntime's top-level module and of its C module
(onnxruntime.capi.onnxruntime_pybind11_state) exists in ortgpu, with the same kind; versions.

The oracle is the pinned onnxruntime (pyproject's test extra).  A newer onnxruntime that adds
names fails here with the list of names to add, which is how the surface is upgraded on purpose.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import types

import onnxruntime
import onnxruntime.capi.onnxruntime_pybind11_state as ort_state
import pytest

import ortgpu
import ortgpu.capi.onnxruntime_pybind11_state as ortgpu_state

PINNED = "1.32.0"


def kind(obj) -> str:
    """module, exception, enum, class, function or constant."""
    if isinstance(obj, types.ModuleType):
        return "module"
    if isinstance(obj, type):
        if issubclass(obj, BaseException):
            return "exception"
        return "enum" if hasattr(obj, "__members__") else "class"
    return "function" if callable(obj) else "constant"


def public(module) -> list[str]:
    """Public names, less subpackages that appear only once something imports them
    (onnxruntime.quantization, onnxruntime.transformers, ...: ortgpu has its own where it has one)."""
    def loaded_subpackage(n):
        v = getattr(module, n)
        return isinstance(v, types.ModuleType) and v.__name__.startswith(module.__name__ + ".") and \
            n not in ("capi",)
    return sorted(n for n in dir(module) if not n.startswith("_") and not loaded_subpackage(n)) + \
        ["__version__"] * hasattr(module, "__version__")


def test_oracle_is_the_pinned_version():
    assert onnxruntime.__version__ == PINNED, (
        f"onnxruntime {onnxruntime.__version__} is installed but the surface tests follow {PINNED}: "
        f"install the pinned test extra, or upgrade ortgpu's surface and this pin together")


@pytest.mark.parametrize("ours, theirs", [(ortgpu, onnxruntime), (ortgpu_state, ort_state)],
                         ids=["onnxruntime", "onnxruntime_pybind11_state"])
def test_every_public_name_exists_with_the_same_kind(ours, theirs):
    missing = [n for n in public(theirs) if not hasattr(ours, n)]
    assert missing == [], f"{theirs.__name__} {onnxruntime.__version__} names missing in {ours.__name__}: {missing}"
    differ = {n: (kind(getattr(theirs, n)), kind(getattr(ours, n))) for n in public(theirs)
              if kind(getattr(theirs, n)) != kind(getattr(ours, n))}
    assert differ == {}, f"(onnxruntime kind, ortgpu kind) differ: {differ}"


def test_enums_have_onnxruntime_members_and_values():
    checked = 0
    for theirs_mod, ours_mod in ((onnxruntime, ortgpu), (ort_state, ortgpu_state)):
        for name in public(theirs_mod):
            theirs = getattr(theirs_mod, name)
            if kind(theirs) != "enum":
                continue
            want = {k: int(v) for k, v in theirs.__members__.items()}
            got = {k: int(v) for k, v in getattr(ours_mod, name).__members__.items()}
            assert got == want, f"{name}: onnxruntime has {want}, ortgpu {got}"
            checked += 1
    assert checked >= 20


def test_module_constants_follow_onnxruntime():
    assert ortgpu.version == ortgpu.__version__ == onnxruntime.version == onnxruntime.__version__
    assert ortgpu.import_capi_exception is onnxruntime.import_capi_exception is None
    assert isinstance(ortgpu.cuda_version, str) and isinstance(ortgpu.package_name, str)
    assert int(ortgpu_state.kNextPowerOfTwo) == int(ort_state.kNextPowerOfTwo)
    assert int(ortgpu_state.kSameAsRequested) == int(ort_state.kSameAsRequested)


def test_versions():
    assert ortgpu.__version__ == PINNED  # the onnxruntime API version ortgpu implements
    own = importlib.metadata.version("ortgpu")
    assert ortgpu.__ortgpu_version__ == own  # pyproject's version
    text = ortgpu.get_version_string()
    assert PINNED in text and own in text and "ortgpu" in text
    assert onnxruntime.get_version_string() == PINNED  # onnxruntime's says its version only
    assert "Build Info" in ortgpu.get_build_info() and "Build Info" in onnxruntime.get_build_info()


def test_capi_aliases_are_the_same_objects():
    for name in ("InferenceSession", "SessionOptions", "RunOptions", "OrtValue", "OrtDevice", "OrtMemoryInfo",
                 "SparseTensor", "set_seed", "get_version_string", "copy_tensors"):
        assert getattr(ortgpu_state, name) is getattr(ortgpu, name), name
    pybind_state = importlib.import_module("ortgpu.capi._pybind_state")
    assert pybind_state.OrtValueVector is ortgpu_state.OrtValueVector
    assert ortgpu.onnxruntime_validation.get_package_name_and_version_info()[1] == PINNED
    assert ortgpu_state.opkernel.KernelDef and ortgpu_state.schemadef.OpSchema


def test_kernel_catalogue_is_onnxruntimes_shape():
    ref = {(k.op_name, k.domain, k.provider) for k in ort_state.get_all_opkernel_def()}
    got = ortgpu_state.get_all_opkernel_def()
    assert ("Abs", "", "CPUExecutionProvider") in ref
    abs_cpu = [k for k in got if (k.op_name, k.domain, k.provider) == ("Abs", "", "CPUExecutionProvider")]
    assert abs_cpu and all(isinstance(k.version_range, tuple) and len(k.version_range) == 2 for k in abs_cpu)
    assert all(isinstance(v, list) for k in got for v in k.type_constraints.values())
    # ranges of one op and provider do not overlap
    ranges = sorted(k.version_range for k in abs_cpu)
    assert all(a[1] < b[0] for a, b in zip(ranges, ranges[1:])), ranges
    assert len(ortgpu_state.get_all_operator_schema()) > 100
