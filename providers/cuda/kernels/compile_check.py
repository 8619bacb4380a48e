"""Compile the declared CUDA units to cubin without a GPU, with NVRTC (``cuda-bindings`` and
the ``nvidia-cuda-nvrtc`` wheel) or with ``nvcc``: the check ``tests/test_cuda_compile.py``
runs for sm_80 and sm_90.  Each compiler gets exactly what the loader gives CuPy: the text
of ``module.source_text`` and the unit's name expressions.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from ortgpu.providers.cuda.kernels import module as cu


class CompileError(RuntimeError):
    """A CUDA unit did not compile; the message carries the compiler's log."""


def nvrtc_available() -> str | None:
    """None when NVRTC can be used, else the reason it cannot."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as e:
        return f"cuda-bindings is not installed ({e})"
    try:
        err, *_ = nvrtc.nvrtcVersion()
    except Exception as e:  # noqa: BLE001  (the library itself failed to load)
        return f"the NVRTC library cannot be loaded ({e})"
    if err != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return f"nvrtcVersion failed: {err}"
    return None


def nvcc_path() -> str | None:
    """The nvcc executable, from PATH or CUDA_HOME/CUDA_PATH, or None."""
    found = shutil.which("nvcc")
    if found:
        return found
    for var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(var)
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def _check(nvrtc, result, what, prog=None):
    err = result[0] if isinstance(result, tuple) else result
    if err == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return result[1:] if isinstance(result, tuple) else ()
    log = ""
    if prog is not None:
        _, size = nvrtc.nvrtcGetProgramLogSize(prog)
        buf = b" " * size
        nvrtc.nvrtcGetProgramLog(prog, buf)
        log = buf.decode(errors="replace").rstrip("\x00 \n")
    raise CompileError(f"{what} failed ({err}):\n{log}")


def nvrtc_cubin(unit: cu.Unit, arch: str) -> bytes:
    """The cubin of ``unit`` for ``arch`` ("sm_90"), compiled by NVRTC; every name expression
    must resolve to a kernel."""
    return nvrtc_compile(cu.source_text(unit.source), f"{unit.source}[{unit.key}]", unit.names, arch)


def nvrtc_compile(text: str, what: str, names, arch: str) -> bytes:
    """The cubin of CUDA source ``text`` (named ``what`` in messages) for ``arch``, with the
    name expressions ``names``, each of which must resolve to a kernel."""
    from cuda.bindings import nvrtc

    label = what.split("[")[0] or "source.cu"
    (prog,) = _check(nvrtc, nvrtc.nvrtcCreateProgram(text.encode(), label.encode(), 0, [], []),
                     "nvrtcCreateProgram")
    try:
        for name in names:
            _check(nvrtc, nvrtc.nvrtcAddNameExpression(prog, name.encode()), f"name expression {name}")
        opts = [f"--gpu-architecture={arch}".encode()] + [o.encode() for o in cu.OPTIONS]
        _check(nvrtc, nvrtc.nvrtcCompileProgram(prog, len(opts), opts),
               f"NVRTC compile of {what} for {arch}", prog)
        for name in names:
            (lowered,) = _check(nvrtc, nvrtc.nvrtcGetLoweredName(prog, name.encode()), f"lowered name of {name}")
            if not lowered:
                raise CompileError(f"{what}: no kernel for {name}")
        (size,) = _check(nvrtc, nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        _check(nvrtc, nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


def nvcc_source(unit: cu.Unit) -> str:
    """The unit as one nvcc translation unit: taking each kernel's address in host code makes
    nvcc instantiate exactly the templates NVRTC gets as name expressions."""
    refs = ",\n    ".join(f"reinterpret_cast<const void*>(&{name})" for name in unit.names)
    return (f"{cu.source_text(unit.source)}\n\n#line 1 \"instantiations\"\n"
            f"const void* const ortgpu_instantiations[] = {{\n    {refs}\n}};\n")


def nvcc_cubin(unit: cu.Unit, arch: str, nvcc: str | None = None) -> bytes:
    """The cubin of ``unit`` for ``arch`` ("sm_90"), compiled by nvcc."""
    nvcc = nvcc or nvcc_path()
    if nvcc is None:
        raise CompileError("nvcc not found")
    with tempfile.TemporaryDirectory(prefix="ortgpu_nvcc_") as tmp:
        src = os.path.join(tmp, "unit.cu")
        out = os.path.join(tmp, "unit.cubin")
        with open(src, "w") as f:
            f.write(nvcc_source(unit))
        cmd = [nvcc, f"-arch={arch}", "-cubin", *cu.OPTIONS, "-o", out, src]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f"nvcc compile of {unit.source}[{unit.key}] for {arch} failed:\n"
                               f"{proc.stdout}{proc.stderr}")
        with open(out, "rb") as f:
            return f.read()
