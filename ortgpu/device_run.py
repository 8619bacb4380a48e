"""Runs whose inputs and outputs stay on their devices: run_with_iobinding, run_with_ort_values.

Each input OrtValue says where it is (ortgpu.devices); each wanted output says where it
should go (a ``Target``): a device (run_with_ort_values asks for the CPU, as onnxruntime
returns its fetches there), a preallocated OrtValue, or wherever it is produced.
The session compiles one plan per such device signature and keeps it (``_plan_for``): the
partitioner then places no copy for an input already on the device that first uses it, nor
for an output wanted where it is produced, so a run with device inputs and device outputs
makes no host round trip.  A preallocated output receives its result by one copy on its
own device.  With CUDA graphs the session's GraphRunner runs instead (its outputs are its
fixed buffers, copied out to their targets).

After the run the providers' streams are synchronized (onnxruntime's default), unless the
run config entry ``disable_synchronize_execution_providers`` is "1".
"""
from __future__ import annotations

import dataclasses
from time import perf_counter_ns

from ortgpu.devices import kind_of
from ortgpu.errors import InvalidArgument
from ortgpu.partition import ANY, HOST
from ortgpu.session import _run_scope, check_feed
from ortgpu.values import OrtValue, device_of

DISABLE_SYNC = "disable_synchronize_execution_providers"  # onnxruntime's run config key


@dataclasses.dataclass(frozen=True)
class Target:
    """Where an output goes: `device` (a device kind name, None for wherever it is produced)
    and `device_id`, or into `buffer`, a preallocated OrtValue (on its device)."""
    device: str | None = None
    device_id: int = 0
    buffer: OrtValue | None = None

    @classmethod
    def into(cls, buffer: OrtValue) -> "Target":
        name, device_id = buffer._device()
        return cls(name, device_id, buffer)


def run_on_devices(sess, feeds: dict, fetch: list, run_options, graph_id: int) -> list:
    """Run `sess` with `feeds` ({input name: OrtValue}, names checked by the caller) and return
    an OrtValue per (output position, Target) of `fetch`."""
    names = sess._plan.input_names
    inputs, in_devs = [], []
    for name in names:
        if name in feeds:
            value = feeds[name]._value
            inputs.append(check_feed(name, value, sess._input_meta[name].type, keep_device=True))
            in_devs.append(sess._device_key(device_of(value), f"input '{name}'"))
        else:  # an omitted optional input, or an initializer that was not overridden
            inputs.append(sess._init_values.get(name))
            in_devs.append(HOST)
    out_names = sess._plan.output_names
    out_devs = [ANY] * len(out_names)
    for pos, target in fetch:
        if target.device is not None:
            out_devs[pos] = sess._device_key((target.device, target.device_id), f"output '{out_names[pos]}'")

    providers = sess._providers
    for p in providers:
        wait = getattr(p, "wait_for_caller", None)
        if wait is not None:
            wait()
    graphs = sess._graphs
    plan = None if graphs is not None else sess._plan_for(tuple(in_devs), tuple(out_devs))
    rec = sess._recorder
    t0 = perf_counter_ns()
    with _run_scope(providers):
        if plan is None:
            results = graphs.run(graph_id, inputs)
        elif rec is None:
            results = plan.run(inputs)
        else:
            results = plan.run_profiled(inputs, rec)
        outputs = [_deliver(sess, results[pos], target, out_names[pos], plan is None) for pos, target in fetch]
    if rec is not None:
        rec.span("model_run", t0, perf_counter_ns())
    if run_options is None or run_options._config.get(DISABLE_SYNC) != "1":
        for p in providers:
            sync = getattr(p, "synchronize", None)
            if sync is not None:
                sync()
    return outputs


def _deliver(sess, value, target: Target, name: str, from_graph: bool) -> OrtValue:
    """The OrtValue of output `name` at its target.  A graph's outputs are its fixed buffers:
    they are moved or copied out, never handed out themselves."""
    if target.buffer is not None:
        write_into(sess, name, target.buffer, value)
        return target.buffer
    if from_graph:
        moved = value if target.device is None else move(sess, value, target.device)
        value = _fresh_copy(value) if moved is value else moved
    return OrtValue(value, type_proto=sess._output_meta[name].type)


def write_into(sess, name: str, buffer: OrtValue, value) -> None:
    """Copy output `name` into a preallocated tensor, after onnxruntime's checks of its element
    type and shape (InvalidArgument with its messages: 'Got' is the buffer, 'Expected' the result)."""
    dst = buffer._tensor(f"binding output '{name}'")
    if value is None or isinstance(value, (list, dict)):
        what = "an empty optional" if value is None else "a sequence" if isinstance(value, list) else "a map"
        raise InvalidArgument(f"Output '{name}' is {what}: it cannot be written into a preallocated tensor")
    want, got = tuple(value.shape), tuple(dst.shape)
    if len(want) != len(got):
        raise InvalidArgument(f"Invalid rank for output: {name} Got: {len(got)} Expected: {len(want)} "
                              f"Please fix either the inputs/outputs or the model.")
    bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, want)) if g != w]
    if bad:
        lines = "".join(f" index: {i} Got: {g} Expected: {w}\n" for i, g, w in bad)
        raise InvalidArgument(f"Got invalid dimensions for output: {name} for the following indices\n"
                              f"{lines} Please fix either the inputs/outputs or the model.")
    if dst.dtype != value.dtype:
        raise InvalidArgument(f"Unexpected output data type. Actual: ({OrtValue(dst).data_type()}) , "
                              f"expected: ({OrtValue(value).data_type()})")
    kind = kind_of(dst)
    if kind_of(value) is not kind:
        value = move(sess, value, kind.name)
    kind.copy_into(dst, value, wait=False)


def move(sess, value, device: str):
    """`value` on `device` (a device kind name), through the providers' host copies."""
    src = device_of(value)[0]
    if src == device or value is None:
        return value
    if src != HOST:
        value = sess._provider_on(src).copy_to_host(value)
    if device != HOST:
        value = sess._provider_on(device).copy_from_host(value)
    return value


def _fresh_copy(value):
    if isinstance(value, list):
        return [_fresh_copy(v) for v in value]
    if value is None or isinstance(value, dict):
        return value
    return value.copy()
