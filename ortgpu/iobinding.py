"""IOBinding: inputs and outputs bound to device memory, for ``session.run_with_iobinding``.

As in onnxruntime, ``IOBinding`` is the Python API and ``SessionIOBinding`` holds the state:
inputs by name (OrtValues: a bound CPU array is shared, not copied), outputs by name in
binding order (a device to produce on, or a preallocated OrtValue that receives the result),
and the outputs of the last run.  Input names are checked when bound, output names when run
(onnxruntime's order).  Errors during a run are RuntimeError("Error in execution: ...")
whose ``__cause__`` is ortgpu's typed error, as onnxruntime's binding wraps them.
"""
from __future__ import annotations

import numpy as np

from ortgpu.run_core import Target
from ortgpu.devices import device_kind
from ortgpu.values import OrtValue, check_device_id, element_dtype, tensor_shape


class SessionIOBinding:
    """The bindings of one session (onnxruntime's C-level SessionIOBinding)."""

    def __init__(self, session):
        # SessionIOBinding(session._sess), onnxruntime's C-level form: the C-level session wraps one
        session = vars(session).get("_session", session)
        self._session = session
        self.inputs: dict[str, OrtValue] = {}
        self.outputs: dict[str, Target] = {}   # insertion order = order of get_outputs()
        self.results: list[OrtValue] = []

    def bind_input(self, name: str, value, *pointer) -> None:
        """Bind input `name` to an OrtValue (or a NumPy array, shared), or in onnxruntime's
        C-level form ``bind_input(name, ort_device, element_type, shape, buffer_ptr)`` to memory
        the caller owns."""
        if pointer:
            value = _from_pointer(value, *pointer)
        if name not in self._session._io.feedable:
            raise RuntimeError(f"Error when binding input: Failed to find input name in the mapping: {name}")
        self.inputs[name] = value if isinstance(value, OrtValue) else OrtValue(value, value)

    def bind_ortvalue_input(self, name: str, value) -> None:
        self.bind_input(name, value)

    def bind_output(self, name: str, device_type="cpu", device_id=0, *pointer) -> None:
        """Bind output `name` to a device: the run allocates it there.  A device none of the
        session's providers runs on (cuda for a CPU-only session) leaves the output on the
        CPU, where its producer puts it, as onnxruntime does.  onnxruntime's C-level forms
        take an OrtDevice: ``bind_output(name, ort_device)`` and ``bind_output(name,
        ort_device, element_type, shape, buffer_ptr)`` (memory the caller owns)."""
        if not isinstance(device_type, str):  # an OrtDevice
            if pointer or device_id != 0:
                self.bind_ortvalue_output(name, _from_pointer(device_type, device_id, *pointer))
                return
            device_type, device_id = _device_of(device_type)
        device_kind(device_type)
        device_id = check_device_id(device_id)
        if not any(getattr(p, "device", "cpu") == device_type for p in self._session._providers):
            device_type, device_id = "cpu", 0
        self.outputs[name] = Target(device_type, device_id)

    def bind_ortvalue_output(self, name: str, ortvalue: OrtValue) -> None:
        """Bind output `name` to a preallocated tensor: the run writes into its memory."""
        ortvalue._tensor(f"bind_ortvalue_output('{name}')")
        self.outputs[name] = Target.into(ortvalue)

    def get_outputs(self):
        """The last run's outputs, as onnxruntime's C-level OrtValueVector."""
        from ortgpu.value_vector import OrtValueVector  # noqa: PLC0415
        return OrtValueVector(self.results)

    def copy_outputs_to_cpu(self) -> list:
        return [_to_cpu(v) for v in self.results]

    def clear_binding_inputs(self) -> None:
        self.inputs.clear()

    def clear_binding_outputs(self) -> None:
        self.outputs.clear()
        self.results = []

    def synchronize_inputs(self) -> None:
        """Wait until the devices holding bound inputs have finished all queued work (inputs
        filled on another stream, e.g. torch's, are then complete)."""
        for v in self.inputs.values():
            name, device_id = v._device()
            device_kind(name).synchronize(device_id)

    def synchronize_outputs(self) -> None:
        """Wait until the session's device work (the last run's outputs) is complete."""
        for p in self._session._providers:
            sync = getattr(p, "synchronize", None)
            if sync is not None:
                sync()


def _device_of(ort_device) -> tuple[str, int]:
    from ortgpu.device_info import device_kind_name  # noqa: PLC0415
    return device_kind_name(ort_device), ort_device.device_id()


def _from_pointer(ort_device, element_type, shape, buffer_ptr) -> OrtValue:
    """An OrtValue over memory the caller owns, described the C-level way (an OrtDevice)."""
    device, device_id = _device_of(ort_device)
    array = device_kind(device).from_pointer(int(buffer_ptr), tensor_shape(shape), element_dtype(element_type),
                                             device_id)
    return OrtValue(array)


def _to_cpu(value: OrtValue):
    v = value._value
    if isinstance(v, list):
        return [OrtValue(x).numpy() for x in v]
    if v is None or isinstance(v, dict):
        return v
    return value.numpy()


class IOBinding:
    """Binds a session's inputs and outputs to (device) memory: ``session.io_binding()``."""

    def __init__(self, session):
        self._session = session
        self._iobinding = SessionIOBinding(session)
        self._numpy_obj_references: dict = {}

    def bind_cpu_input(self, name, arr_on_cpu) -> None:
        """Bind input `name` to a NumPy array, shared (later changes to it are seen by runs)."""
        if name not in self._session._io.feedable:
            raise RuntimeError(f"Failed to find NodeArg with name: {name} in the def list")
        if not isinstance(arr_on_cpu, np.ndarray):
            raise RuntimeError(f"Unable to create OrtValue from the given python object "
                               f"(bind_cpu_input('{name}') needs a numpy array, got {type(arr_on_cpu).__name__})")
        self._iobinding.bind_input(name, OrtValue(arr_on_cpu, arr_on_cpu))
        self._numpy_obj_references[name] = arr_on_cpu

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr) -> None:
        """Bind input `name` to memory the caller owns at `buffer_ptr` on a device (a CuPy
        array's ``data.ptr``, a torch tensor's ``data_ptr()``, a NumPy array's ``ctypes.data``)."""
        self._iobinding.bind_input(name, _at_pointer(buffer_ptr, device_type, device_id, element_type, shape))

    def bind_ortvalue_input(self, name, ortvalue) -> None:
        _need_ortvalue("bind_ortvalue_input", name, ortvalue)
        self._iobinding.bind_ortvalue_input(name, ortvalue)

    def synchronize_inputs(self) -> None:
        self._iobinding.synchronize_inputs()

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None,
                    buffer_ptr=None) -> None:
        """Bind output `name` to a device (the run allocates it there) or, with `buffer_ptr`,
        `element_type` and `shape`, to memory the caller owns (the run writes into it)."""
        if buffer_ptr is None:
            self._iobinding.bind_output(name, device_type, device_id)
            return
        if element_type is None or shape is None:
            raise ValueError("`element_type` and `shape` are to be provided if pre-allocated memory is provided")
        self._iobinding.bind_ortvalue_output(name, _at_pointer(buffer_ptr, device_type, device_id, element_type, shape))

    def bind_ortvalue_output(self, name, ortvalue) -> None:
        _need_ortvalue("bind_ortvalue_output", name, ortvalue)
        self._iobinding.bind_ortvalue_output(name, ortvalue)

    def synchronize_outputs(self) -> None:
        self._iobinding.synchronize_outputs()

    def get_outputs(self) -> list[OrtValue]:
        """The OrtValues of the last run's bound outputs, in binding order (on their devices)."""
        return list(self._iobinding.get_outputs())

    def get_outputs_as_ortvaluevector(self):
        """The last run's outputs as an OrtValueVector (onnxruntime's C-level container)."""
        return self._iobinding.get_outputs()

    def copy_outputs_to_cpu(self) -> list:
        """The last run's outputs as NumPy arrays (sequences as lists of arrays)."""
        return self._iobinding.copy_outputs_to_cpu()

    def clear_binding_inputs(self) -> None:
        self._iobinding.clear_binding_inputs()
        self._numpy_obj_references.clear()

    def clear_binding_outputs(self) -> None:
        self._iobinding.clear_binding_outputs()


def _at_pointer(buffer_ptr, device_type, device_id, element_type, shape) -> OrtValue:
    """An OrtValue over memory the caller owns at `buffer_ptr` on a device (bind_input, and
    bind_output with a buffer)."""
    kind, dtype, dims = device_kind(device_type), element_dtype(element_type), tensor_shape(shape)
    return OrtValue(kind.from_pointer(int(buffer_ptr), dims, dtype, check_device_id(device_id)))


def _need_ortvalue(what: str, name, value) -> None:
    if not isinstance(value, OrtValue):
        raise TypeError(f"{what}('{name}') needs an OrtValue, got {type(value).__name__}")


__all__ = ["IOBinding", "SessionIOBinding"]
