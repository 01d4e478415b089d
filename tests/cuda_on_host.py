"""A stand-in for CuPy that runs the CUDA source of ``tinyconv/kernels/gpu.py`` on the host.

The host C++ compiler (g++) compiles the CUDA source as it is, with CUDA's built-in names
(``blockIdx``, ``__global__``, ...) defined as plain C++. A launch runs every (block, thread) of its
grid in turn, so the kernels' index arithmetic, grid-stride loops, entry points and the order of
their arguments run exactly as written, on machines without a GPU. What it cannot show: races
between threads, the GPU's flush-to-zero of float32 subnormals, and the GPU's own math library.

Arrays are NumPy arrays of a subclass that the backend takes for CuPy arrays, with CuPy's ``get``.
"""
from __future__ import annotations

import ctypes
import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np

# CUDA's built-in names as plain C++; the grid's indices are globals that each launch sets.
CUDA_AS_CPP = r"""
#include <cmath>
#include <cstring>
struct Index3 { unsigned int x, y, z; };
extern "C" { Index3 blockIdx, threadIdx, blockDim, gridDim; }
#define __global__
#define __device__
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, sizeof d); return d; }
using std::floor;
using std::sqrt;
"""
C_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def compiler_available() -> bool:
    return shutil.which("g++") is not None


def elementwise_as_cuda(in_params: str, out_params: str, operation: str, name: str, ctype: str) -> str:
    """An ElementwiseKernel (all parameters of type ``T``) as a CUDA function ``name_ctype``,
    the way CuPy writes it: inputs read at element i, outputs bound by reference, the operation."""
    params = [p.split() for p in f"{in_params}, {out_params}".split(",")]
    assert {kind for kind, _ in params} == {"T"}, params
    inputs = [n for _, n in params[:len(in_params.split(","))]]
    outputs = [n for _, n in params[len(inputs):]]
    args = ", ".join([f"const {ctype}* {n}_" for n in inputs] + [f"{ctype}* {n}_" for n in outputs])
    binds = " ".join([f"const {ctype} {n} = {n}_[i];" for n in inputs] + [f"{ctype}& {n} = {n}_[i];" for n in outputs])
    return (f'extern "C" __global__ void {name}_{ctype}(long long size, {args}) {{\n'
            f"    for (long long i = 0; i < size; ++i) {{ {binds} {operation} }}\n}}\n")


class HostArray(np.ndarray):
    """A host array that tinyconv's backend takes for a CuPy array (it goes by the type's module)."""
    __module__ = "cupy._on_host"

    def get(self) -> np.ndarray:
        return self.view(np.ndarray).copy()


def _host(a) -> HostArray:
    return a.view(HostArray)


class HostKernel:
    """One compiled entry point, launched like a CuPy kernel: ``kernel(grid, block, args)``."""

    def __init__(self, library: ctypes.CDLL, name: str):
        self.function = getattr(library, name)
        self.dims = {n: (ctypes.c_uint * 3).in_dll(library, n)
                     for n in ("blockIdx", "threadIdx", "blockDim", "gridDim")}

    @staticmethod
    def _c_argument(a):
        if isinstance(a, np.ndarray):
            assert a.flags.c_contiguous
            return ctypes.c_void_p(a.ctypes.data)
        if isinstance(a, np.int64):
            return ctypes.c_longlong(int(a))
        if isinstance(a, np.float64):
            return ctypes.c_double(float(a))
        raise TypeError(f"a CUDA kernel takes arrays, np.int64 and np.float64, got {type(a).__name__}")

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        c_args = [self._c_argument(a) for a in args]
        self.dims["gridDim"][0], self.dims["blockDim"][0] = grid[0], block[0]
        for b in range(grid[0]):
            self.dims["blockIdx"][0] = b
            for t in range(block[0]):
                self.dims["threadIdx"][0] = t
                self.function(*c_args)


class HostCuPy:
    """The part of CuPy's interface that ``kernels/gpu.py`` uses, on NumPy and g++."""
    ndarray = HostArray
    int32, float32, float64 = np.int32, np.float32, np.float64

    def __init__(self, build_dir: Path):
        self.build_dir = Path(build_dir)
        self.libraries: dict[str, ctypes.CDLL] = {}

    def compile(self, source: str) -> ctypes.CDLL:
        """Compile ``source`` as C++ once (no multiply-add contraction, as ``--fmad=false``)."""
        digest = hashlib.sha256(source.encode()).hexdigest()[:16]
        if digest not in self.libraries:
            cpp, library = self.build_dir / f"{digest}.cpp", self.build_dir / f"{digest}.so"
            cpp.write_text(CUDA_AS_CPP + source)
            subprocess.run(["g++", "-std=c++14", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-o",
                            str(library), str(cpp)], check=True, capture_output=True, text=True)
            self.libraries[digest] = ctypes.CDLL(str(library))
        return self.libraries[digest]

    # --- arrays -----------------------------------------------------------------------------------
    @staticmethod
    def asarray(a, dtype=None) -> HostArray:
        # A host array is copied, as CuPy copies it to the device; a "device" array is not.
        return _host(np.asarray(a, dtype=dtype) if isinstance(a, HostArray) else np.array(a, dtype=dtype))

    @staticmethod
    def ascontiguousarray(a, dtype=None) -> HostArray:
        return _host(np.ascontiguousarray(a, dtype=dtype))

    @staticmethod
    def empty(shape, dtype) -> HostArray:
        return _host(np.empty(shape, dtype=dtype))

    @staticmethod
    def zeros(shape, dtype) -> HostArray:
        return _host(np.zeros(shape, dtype=dtype))

    sqrt = staticmethod(np.sqrt)  # for the reference kernels, which run on any array module

    # --- kernels ----------------------------------------------------------------------------------
    def RawModule(self, code: str, options: tuple = ()):  # noqa: N802 (CuPy's name)
        library = self.compile(code)
        return type("HostModule", (), {"get_function": lambda _, name: HostKernel(library, name)})()

    def ElementwiseKernel(self, in_params, out_params, operation, name, options=()):  # noqa: N802
        n_inputs = len(in_params.split(","))

        def run(*args):
            outputs = args[n_inputs:]
            dtype = outputs[0].dtype
            for out in outputs:
                assert isinstance(out, np.ndarray) and out.flags.c_contiguous and out.dtype == dtype
            # Scalars and strided inputs become contiguous arrays of the outputs' shape.
            inputs = [np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=dtype), outputs[0].shape))
                      for a in args[:n_inputs]]
            library = self.compile(elementwise_as_cuda(in_params, out_params, operation, name, C_TYPES[dtype]))
            function = getattr(library, f"{name}_{C_TYPES[dtype]}")
            pointers = [ctypes.c_void_p(a.ctypes.data) for a in inputs + list(outputs)]
            function(ctypes.c_longlong(outputs[0].size), *pointers)

        return run
