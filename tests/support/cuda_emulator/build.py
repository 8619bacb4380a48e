"""Compile CUDA source text for the host emulator: the unchanged text after ``cuda_host.h``,
then one ``extern "C"`` launch entry and one parameter description per name expression,
built with g++ into a shared library that is cached on disk by the hash of everything
that goes into it.

Rules:
* The text compiles as C++ of the standard the loader gives NVRTC (``--std=c++17`` in
  ``module.OPTIONS``), so a source that NVRTC would reject for its standard fails here too.
* ``extern __shared__ T name[];`` (dynamic shared memory) is the one construct rewritten:
  it becomes a pointer to the emulator's dynamic shared buffer.
* Entry ``i`` belongs to ``names[i]``: ``ortgpu_emu_launch_i(LaunchArgs*)`` and
  ``ortgpu_emu_params_i(ParamInfo*, capacity)``.
* Flush-to-zero as on the GPU (cuda_host.h): on unless the options say ``-ftz=false``.
* UBSan checks are compiled in trap mode (no runtime library): an out-of-bounds index into
  a fixed-size array, signed overflow, a misaligned or null pointer, a bad shift stops the
  launch with an error instead of passing silently.
* The cache folder is ``$ORTGPU_EMU_CACHE``, else ``~/.cache/ortgpu/cuda-emulator``, else a
  temporary folder; a lock file per library makes parallel test workers compile it once.
"""
from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading

HERE = pathlib.Path(__file__).resolve().parent
HEADER = HERE / "cuda_host.h"
FLAGS = ("-O0", "-shared", "-fPIC", "-fvisibility=hidden", "-fno-math-errno",
         "-fsanitize=undefined", "-fno-sanitize=vptr", "-fsanitize-undefined-trap-on-error", "-w")
_DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s+)?(?P<type>[A-Za-z_][\w\s:<>,*]*?)\s*"
    r"(?:__align__\s*\(\s*\d+\s*\)\s*)?(?P<name>[A-Za-z_]\w*)\s*\[\s*\]\s*;")


class EmulatorBuildError(RuntimeError):
    """The source did not compile for the host; the message carries g++'s output."""


@functools.lru_cache(maxsize=None)
def compiler() -> str | None:
    """The g++ executable ($CXX when set), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


@functools.lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    return subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout


def cache_dir() -> pathlib.Path:
    """Where compiled libraries are kept (created on first use)."""
    for candidate in (os.environ.get("ORTGPU_EMU_CACHE"),
                      os.path.join(os.path.expanduser("~"), ".cache", "ortgpu", "cuda-emulator"),
                      os.path.join(tempfile.gettempdir(), f"ortgpu-cuda-emulator-{os.getuid()}")):
        if not candidate:
            continue
        try:
            os.makedirs(candidate, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return pathlib.Path(candidate)
    raise EmulatorBuildError("no writable cache folder for the CUDA emulator (set ORTGPU_EMU_CACHE)")


def ftz_flags(options) -> tuple[str, ...]:
    """``-DORTGPU_EMU_FTZ`` unless the options ask for ``-ftz=false``: CuPy compiles every
    kernel with -ftz=true (float32 subnormals flush to zero), so the emulator does too."""
    ftz = True
    for opt in options:
        if opt.startswith(("-ftz=", "--ftz=")):
            ftz = opt.split("=", 1)[1].strip().lower() == "true"
    return ("-DORTGPU_EMU_FTZ",) if ftz else ()


def std_flag(options) -> str:
    """The g++ -std flag matching NVRTC's --std option (c++17 when none is given)."""
    for opt in options:
        if opt.startswith(("--std=", "-std=")):
            return "-std=" + opt.split("=", 1)[1]
    return "-std=c++17"


def rewrite_dynamic_shared(code: str) -> str:
    """``extern __shared__ T name[];`` -> a pointer to the emulator's dynamic shared buffer."""
    code = _DYNAMIC_SHARED.sub(
        lambda m: (f"{m['type'].strip()}* const {m['name']} = "
                   f"reinterpret_cast<{m['type'].strip()}*>(::ortgpu_emu::dynamic_shared());"), code)
    if re.search(r"extern\s+__shared__", code):
        raise EmulatorBuildError("an extern __shared__ declaration the emulator cannot rewrite "
                                 "(expected `extern __shared__ T name[];`)")
    return code


def translation_unit(code: str, names) -> str:
    """The C++ text g++ compiles: header, source, then the entry points of ``names``."""
    entries = []
    for i, name in enumerate(names):
        entries.append(
            f"ORTGPU_EMU_EXPORT int ortgpu_emu_launch_{i}(ortgpu_emu::LaunchArgs* la) {{\n"
            f"    return ortgpu_emu::launch(&{name}, la);\n}}\n"
            f"ORTGPU_EMU_EXPORT int ortgpu_emu_params_{i}(ortgpu_emu::ParamInfo* out, int capacity) {{\n"
            f"    return ortgpu_emu::describe(&{name}, out, capacity);\n}}\n")
    half_kind = ("#ifdef ORTGPU_EMU_HALF_TYPE\n"
                 "template <> struct ortgpu_emu::Kind<ORTGPU_EMU_HALF_TYPE> { static constexpr char value = 'h'; };\n"
                 "#endif\n")
    return (f'#include "{HEADER}"\n#line 1 "<source>"\n{rewrite_dynamic_shared(code)}\n'
            f'#line 1 "<emulator entries>"\n{half_kind}{"".join(entries)}')


_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


def build(code: str, names, options=()) -> ctypes.CDLL:
    """The loaded host library for ``code`` with the kernels ``names`` (compiled on first use,
    then taken from the cache)."""
    cxx = compiler()
    if cxx is None:
        raise EmulatorBuildError("g++ not found (set CXX)")
    names = tuple(names)
    flags = (std_flag(options),) + ftz_flags(options) + FLAGS
    text = translation_unit(code, names)
    key = hashlib.sha256("\0".join((text, HEADER.read_text(), " ".join(flags),
                                    _compiler_version(cxx))).encode()).hexdigest()[:32]
    with _lock:
        lib = _loaded.get(key)
        if lib is None:
            path = _compile_cached(cxx, flags, text, key)
            lib = _loaded[key] = ctypes.CDLL(str(path))
    return lib


def _compile_cached(cxx, flags, text, key) -> pathlib.Path:
    folder = cache_dir()
    target = folder / f"{key}.so"
    if target.exists():
        return target
    with open(folder / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # another worker may be compiling the same library
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            src = pathlib.Path(tmp) / "unit.cpp"
            src.write_text(text)
            out = pathlib.Path(tmp) / "unit.so"
            proc = subprocess.run([cxx, *flags, "-o", str(out), str(src)], capture_output=True, text=True)
            if proc.returncode != 0:
                raise EmulatorBuildError(f"g++ could not compile the source for the host:\n{proc.stderr[-6000:]}")
            os.replace(out, target)
    return target
