#!/usr/bin/env python
"""Run onnxruntime's own Python API tests against ortgpu and against onnxruntime, and compare.

onnxruntime's tests (onnxruntime/test/python/onnxruntime_test_python.py and
onnxruntime_test_python_iobinding.py, with their helper.py) are not part of ortgpu: give this
script a directory holding them (a checkout's ``onnxruntime/test/python`` or a copy) and,
optionally, the ``testdata`` folder of models they load.  Nothing is downloaded.

Each file is run twice with pytest, in a fresh process and a scratch working directory:

* ``onnxruntime``: the installed onnxruntime (the pinned oracle),
* ``ortgpu``: the same tests with ``onnxruntime`` (and ``onnxruntime.capi...``) aliased to
  ortgpu in ``sys.modules`` before the tests import it.

Tests that only exercise GPU providers (CUDA, TensorRT, DML, TVM) are deselected: without a
GPU they return early or skip in both runs and would count as passes that prove nothing.
Both runs get the same small compatibility shim for ``onnx.mapping`` (removed from onnx, still
imported by the iobinding tests), so the comparison is like for like.

Usage:
    python scripts/run_ort_python_tests.py /work/ort-tests/onnxruntime/test/python \
        [--testdata DIR | --stand-in-models] [--only ortgpu|onnxruntime] [-k EXPR]

Without the testdata folder, ``--stand-in-models`` builds small models that stand in for the
simple ones (mul_1, matmul_1/2, logicaland, identity_string, identity_opt, the sequence models,
abs_free_dimensions, add_mul_add, the external-initializer Pad model) from what the tests say
about them; the other testdata models stay missing and their tests fail in both runs.

Prints the pass/fail/skip counts of both runs and every test whose outcome differs, with the
first line of its failure.  Exit status 0 when ortgpu passes every test onnxruntime passes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET

TEST_FILES = ("onnxruntime_test_python.py", "onnxruntime_test_python_iobinding.py")

# Tests that run only when a GPU provider is available (they return early or skip without one).
GPU_ONLY = (
    "test_tvm_imported", "test_set_providers", "test_set_providers_with_options", "test_session_providers",
    "test_get_and_set_tuning_results", "test_ort_value_gh_issue9799", "test_run_model_with_cuda_copy_stream",
    "test_multiple_devices",
    # iobinding: every one of these loops over CUDA and DML only
    "test_bind_input_types", "test_bind_input_only", "test_bind_input_and_preallocated_output",
    "test_bind_input_and_non_preallocated_output", "test_bind_input_and_bind_output_with_ortvalues",
)

ALIAS_PLUGIN = textwrap.dedent('''
    """pytest plugin: make `import onnxruntime` (and its capi modules) give ortgpu."""
    import sys

    import ortgpu
    import ortgpu.capi
    import ortgpu.capi._pybind_state
    import ortgpu.capi.onnxruntime_pybind11_state
    import ortgpu.capi.onnxruntime_validation
    import ortgpu.capi.onnxruntime_inference_collection

    sys.modules["onnxruntime"] = ortgpu
    sys.modules["onnxruntime.capi"] = ortgpu.capi
    sys.modules["onnxruntime.capi._pybind_state"] = ortgpu.capi._pybind_state
    sys.modules["onnxruntime.capi.onnxruntime_pybind11_state"] = ortgpu.capi.onnxruntime_pybind11_state
    sys.modules["onnxruntime.capi.onnxruntime_validation"] = ortgpu.capi.onnxruntime_validation
    sys.modules["onnxruntime.capi.onnxruntime_inference_collection"] = ortgpu.capi.onnxruntime_inference_collection
''')

# onnx.mapping was removed from onnx; the iobinding tests still import TENSOR_TYPE_MAP from it.
ONNX_MAPPING_SHIM = textwrap.dedent('''
    """pytest plugin: a minimal onnx.mapping (TENSOR_TYPE_MAP[code].np_dtype) for old test code."""
    import collections
    import sys
    import types

    import onnx
    import onnx.helper

    if "onnx.mapping" not in sys.modules:
        try:
            import onnx.mapping  # noqa: F401
        except ImportError:
            _Entry = collections.namedtuple("TensorDtypeMap", "np_dtype storage_dtype name")
            mapping = types.ModuleType("onnx.mapping")
            mapping.TENSOR_TYPE_MAP = {}
            for _name, _code in onnx.TensorProto.DataType.items():
                try:
                    _np = onnx.helper.tensor_dtype_to_np_dtype(_code)
                except Exception:  # UNDEFINED and types NumPy cannot hold
                    continue
                mapping.TENSOR_TYPE_MAP[_code] = _Entry(_np, _np, "TensorProto." + _name)
            sys.modules["onnx.mapping"] = mapping
            onnx.mapping = mapping
''')


def _stand_in_models() -> dict:
    """Models that stand in for some of onnxruntime's test/testdata files when no checkout's
    testdata is given: rebuilt from what the tests say about them (names, types, shapes,
    values), not copies.  Both runs use the same files, so the comparison stays fair; a test
    that passes on a stand-in shows the API behaves alike, not that the original file loads."""
    from onnx import TensorProto as T  # noqa: PLC0415
    from onnx import helper as h  # noqa: PLC0415
    from onnx import numpy_helper  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    def model(nodes, inputs, outputs, inits=(), opset=17):
        m = h.make_model(h.make_graph(nodes, "stand_in", inputs, outputs, list(inits)),
                         opset_imports=[h.make_opsetid("", opset)], producer_name="ortgpu stand-in")
        m.ir_version = 8
        return m

    vi, seq = h.make_tensor_value_info, h.make_tensor_sequence_value_info
    f32 = np.float32
    out = {
        "mul_1.onnx": model([h.make_node("Mul", ["X", "W"], ["Y"])], [vi("X", T.FLOAT, [3, 2])],
                            [vi("Y", T.FLOAT, [3, 2])],
                            [numpy_helper.from_array(np.array([[1, 2], [3, 4], [5, 6]], f32), "W")]),
        "matmul_1.onnx": model([h.make_node("MatMul", ["X", "W"], ["Y"])], [vi("X", T.FLOAT, [3, 2])],
                               [vi("Y", T.FLOAT, [3, 1])], [numpy_helper.from_array(np.array([[1], [2]], f32), "W")]),
        "matmul_2.onnx": model([h.make_node("MatMul", ["X", "W"], ["Y"])], [vi("X", T.FLOAT, ["None", 2])],
                               [vi("Y", T.FLOAT, ["None", 1])],
                               [numpy_helper.from_array(np.array([[1], [2]], f32), "W")]),
        "logicaland.onnx": model([h.make_node("And", ["input1:0", "input:0"], ["output:0"])],
                                 [vi("input1:0", T.BOOL, [2, 2]), vi("input:0", T.BOOL, [2, 2])],
                                 [vi("output:0", T.BOOL, [2, 2])]),
        "identity_string.onnx": model([h.make_node("Identity", ["input:0"], ["output:0"])],
                                      [vi("input:0", T.STRING, [2, 2])], [vi("output:0", T.STRING, [2, 2])]),
        "sequence_length.onnx": model([h.make_node("SequenceLength", ["X"], ["Y"])], [seq("X", T.FLOAT, None)],
                                      [vi("Y", T.INT64, [])]),
        "sequence_construct.onnx": model([h.make_node("SequenceConstruct", ["tensor1", "tensor2"], ["output_sequence"])],
                                         [vi("tensor1", T.INT64, [2, 3]), vi("tensor2", T.INT64, [2, 3])],
                                         [seq("output_sequence", T.INT64, None)]),
        "sequence_insert.onnx": model([h.make_node("SequenceInsert", ["input_seq", "tensor"], ["output_sequence"])],
                                      [seq("input_seq", T.INT64, None), vi("tensor", T.INT64, [2, 3])],
                                      [seq("output_sequence", T.INT64, None)]),
        "add_mul_add.onnx": model([h.make_node("Add", ["A", "B"], ["t0"], name="add_0"),
                                   h.make_node("Mul", ["t0", "C"], ["t1"], name="mul_0"),
                                   h.make_node("Add", ["t1", "A"], ["Y"], name="add_1")],
                                  [vi(n, T.FLOAT, [2, 2]) for n in "ABC"], [vi("Y", T.FLOAT, [2, 2])]),
    }
    opt = h.make_tensor_sequence_value_info("X", T.FLOAT, None)
    opt_type = h.make_optional_type_proto(opt.type)
    out["identity_opt.onnx"] = model([h.make_node("Identity", ["X"], ["Y"])],
                                     [h.make_value_info("X", opt_type)], [h.make_value_info("Y", opt_type)], opset=18)
    free = vi("x", T.FLOAT, ["Dim1", "Dim2", 5])
    free.type.tensor_type.shape.dim[0].denotation = "DATA_BATCH"
    free.type.tensor_type.shape.dim[1].denotation = "DATA_CHANNEL"
    out["abs_free_dimensions.onnx"] = model([h.make_node("Abs", ["x"], ["y"])], [free],
                                            [vi("y", T.FLOAT, ["Dim1", "Dim2", 5])])
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1], np.int64), "Pads_not_on_disk")
    pads.ClearField("raw_data")
    pads.data_location = T.EXTERNAL
    for key, value in (("location", "Pads_not_on_disk.bin"), ("offset", "0"), ("length", "32")):
        entry = pads.external_data.add()
        entry.key, entry.value = key, value
    out["model_with_external_initializer_come_from_user.onnx"] = model(
        [h.make_node("Pad", ["X", "Pads_not_on_disk"], ["Y"])],
        [vi("X", T.FLOAT, [1, 2]), vi("Pads_not_on_disk", T.INT64, [4])],  # an overridable initializer
        [vi("Y", T.FLOAT, [1, 4])], [pads])
    return out


def run_once(target: str, test_dir: str, testdata: str | None, keyword: str | None, timeout: int,
             stand_ins: bool = False) -> dict:
    """{test id: (outcome, message)} of one pytest run of the test files for `target`."""
    with tempfile.TemporaryDirectory(prefix=f"ort-tests-{target}-") as work:
        plugins = os.path.join(work, "_plugins")
        os.makedirs(plugins)
        with open(os.path.join(plugins, "onnx_mapping_shim.py"), "w") as f:
            f.write(ONNX_MAPPING_SHIM)
        with open(os.path.join(plugins, "ortgpu_as_onnxruntime.py"), "w") as f:
            f.write(ALIAS_PLUGIN)
        if testdata:
            os.symlink(os.path.abspath(testdata), os.path.join(work, "testdata"), target_is_directory=True)
        else:
            os.makedirs(os.path.join(work, "testdata"))  # some tests write their outputs there
            if stand_ins:
                for name, proto in _stand_in_models().items():
                    with open(os.path.join(work, "testdata", name), "wb") as f:
                        f.write(proto.SerializeToString())
        report = os.path.join(work, "report.xml")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "onnx_mapping_shim",
               "--rootdir", work, "-o", "addopts=", f"--junitxml={report}"]
        if target == "ortgpu":
            cmd += ["-p", "ortgpu_as_onnxruntime"]
        for name in GPU_ONLY:
            for file in TEST_FILES:
                cmd += ["--deselect", f"{os.path.join(test_dir, file)}::" + _class_of(file) + f"::{name}"]
        if keyword:
            cmd += ["-k", keyword]
        cmd += [os.path.join(test_dir, f) for f in TEST_FILES if os.path.exists(os.path.join(test_dir, f))]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([plugins, test_dir, os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
        if not os.path.exists(report):
            raise SystemExit(f"{target}: pytest wrote no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}"
                             f"\n{proc.stderr[-3000:]}")
        return parse_junit(report)


def _class_of(file: str) -> str:
    return "TestIOBinding" if "iobinding" in file else "TestInferenceSession"


def parse_junit(path: str) -> dict:
    results = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        test_id = f"{case.get('classname', '').split('.')[-1]}::{case.get('name')}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or node.text or "").strip().splitlines()[0:1]
                message = message[0][:220] if message else ""
                break
        results[test_id] = (outcome, message)
    return results


def counts(results: dict) -> str:
    tally: dict[str, int] = {}
    for outcome, _ in results.values():
        tally[outcome] = tally.get(outcome, 0) + 1
    return ", ".join(f"{tally.get(k, 0)} {k}" for k in ("passed", "failed", "error", "skipped"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("test_dir", help="folder with onnxruntime_test_python*.py and helper.py")
    parser.add_argument("--testdata", help="onnxruntime's test/testdata folder (default: <test_dir>/../testdata)")
    parser.add_argument("--only", choices=("ortgpu", "onnxruntime"), help="run one side only")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--timeout", type=int, default=1200, help="seconds per run")
    parser.add_argument("--stand-in-models", action="store_true",
                        help="without --testdata, build stand-ins for the simple testdata models (see _stand_in_models)")
    args = parser.parse_args(argv)
    test_dir = os.path.abspath(args.test_dir)
    missing = [f for f in (*TEST_FILES, "helper.py") if not os.path.exists(os.path.join(test_dir, f))]
    if missing:
        raise SystemExit(f"{test_dir} lacks {missing}: point at onnxruntime's onnxruntime/test/python")
    testdata = args.testdata or os.path.join(test_dir, "..", "testdata")
    testdata = testdata if os.path.isdir(testdata) else None
    stand_ins = args.stand_in_models and not testdata
    where = testdata or ("stand-in models built by this script (see --help)" if stand_ins else
                         "none (tests that load testdata models fail in both runs)")
    print(f"tests: {test_dir}\ntestdata: {where}")
    runs = {}
    for target in ("onnxruntime", "ortgpu"):
        if args.only and args.only != target:
            continue
        runs[target] = run_once(target, test_dir, testdata, args.keyword, args.timeout, stand_ins)
        print(f"{target}: {counts(runs[target])}")
    if len(runs) < 2:
        for test_id, (outcome, message) in sorted(runs[next(iter(runs))].items()):
            if outcome in ("failed", "error"):
                print(f"  {outcome:7} {test_id}: {message}")
        return 0
    ref, got = runs["onnxruntime"], runs["ortgpu"]
    worse = []
    print("\ntests whose outcome differs (onnxruntime -> ortgpu):")
    for test_id in sorted(set(ref) | set(got)):
        r, g = ref.get(test_id, ("absent", "")), got.get(test_id, ("absent", ""))
        if r[0] != g[0]:
            print(f"  {r[0]:>7} -> {g[0]:<7} {test_id}: {g[1] or r[1]}")
            if r[0] == "passed":
                worse.append(test_id)
    both_failed = [t for t in ref if ref[t][0] in ("failed", "error") and got.get(t, ("",))[0] in ("failed", "error")]
    print(f"\nfailing in both runs: {len(both_failed)}")
    for test_id in both_failed:
        print(f"  {test_id}: onnxruntime: {ref[test_id][1]}")
    print(f"\nortgpu passes {sum(1 for t in ref if ref[t][0] == 'passed' and got.get(t, ('',))[0] == 'passed')} "
          f"of the {sum(1 for t in ref if ref[t][0] == 'passed')} tests onnxruntime passes")
    return 1 if worse else 0


if __name__ == "__main__":
    sys.exit(main())
