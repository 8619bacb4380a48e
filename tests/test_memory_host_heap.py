"""The CPU arena (memory/host_heap.py): glibc keeps freed memory once a session with
enable_cpu_mem_arena is created, not otherwise, not over the user's own malloc settings; and the
"cpu:0" arena shrink gives it back.  Each case runs in a fresh interpreter: the setting is the
process's."""
import subprocess
import sys
import textwrap

import pytest

from ortgpu.memory import host_heap

pytestmark = pytest.mark.skipif(host_heap._glibc() is None, reason="not glibc")

PROBE = textwrap.dedent("""
    import ctypes, sys
    import numpy as np
    from onnx import helper
    import ortgpu
    from ortgpu.memory import host_heap
    calls = []
    real = host_heap._glibc
    def spy():
        libc = real()
        class Spy:
            def mallopt(self, param, value):
                calls.append(("mallopt", param, value))
                return libc.mallopt(param, value)
            def malloc_trim(self, pad):
                calls.append(("malloc_trim", pad))
                return libc.malloc_trim(pad)
        return Spy()
    host_heap._glibc = spy
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", 1, [4])], [helper.make_tensor_value_info("y", 1, [4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()
    so = ortgpu.SessionOptions()
    so.enable_cpu_mem_arena = sys.argv[1] == "1"
    sess = ortgpu.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    ro = ortgpu.RunOptions()
    if so.enable_cpu_mem_arena:
        ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    y = sess.run(None, {"x": np.array([-1, 0, 1, 2], np.float32)}, ro)[0]
    assert y.tolist() == [0, 0, 1, 2]
    print(sorted(calls))
""")


def probe(arena: bool, env=None) -> list:
    import os
    environ = {k: v for k, v in os.environ.items() if k not in host_heap.USER_SETTINGS}
    environ.update(env or {})
    out = subprocess.run([sys.executable, "-c", PROBE, "1" if arena else "0"], capture_output=True, text=True,
                         env=environ, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own probe's printed list


def test_a_session_with_the_cpu_arena_keeps_freed_memory_and_its_shrink_gives_it_back():
    calls = probe(arena=True)
    assert [c for c in calls if c[0] == "mallopt"] == sorted(("mallopt", p, v) for p, v in host_heap.KEEP)
    assert ("malloc_trim", 0) in calls


def test_a_session_without_the_cpu_arena_leaves_malloc_alone():
    assert probe(arena=False) == []


def test_the_users_own_malloc_settings_win():
    assert probe(arena=True, env={"MALLOC_TRIM_THRESHOLD_": "131072"}) == []
