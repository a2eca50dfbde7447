"""CPU kernels pinned to one instruction set, so that a stage computes the same bits on every x86-64
machine with AVX2 (x86-64-v3: Intel since Haswell, AMD since Zen), not only on this one.

Why: the CPU libraries choose their kernels at run time by the instruction sets the CPU has, and an
AVX-512 kernel sums in another order than an AVX2 one. Measured here (Sapphire Rapids): capping the
ISA changes the bits of MKL's matmul and exp/tanh, of oneDNN's convolutions, of OpenBLAS's eigh and
of numpy's log1p; the digits classifier (a CNN) trained to other bits on another CPU, which moved every
digits FID in the 4th digit (issue 13). Each library has its own switch, read from the environment
when it first computes, so `pin` sets them before numpy or torch start (the package's __init__ calls
it; Snakemake's and DVC's jobs run `python -m ctcoupling`, which imports the package first):

- torch's own vectorised kernels (ATen): ATEN_CPU_CAPABILITY
- MKL (torch's BLAS and vector math): MKL_CBWR, Intel's conditional numerical reproducibility
- oneDNN (torch's CPU convolutions): ONEDNN_MAX_CPU_ISA
- OpenBLAS (numpy's and scipy's linear algebra: FID's eigh/sqrtm): OPENBLAS_CORETYPE
- numpy's ufunc loops: NPY_DISABLE_CPU_FEATURES (the AVX-512 targets numpy 2.4 dispatches to)

The price is AVX-512's speed on the machines that have it (about 1.2-1.4x on CPU matmuls and
convolutions here). A value already in the environment wins (`pin` only fills in what is unset), and
CTCOUPLING_NATIVE_CPU=1 leaves the libraries on their native kernels. `in_effect` goes into each
artifact's provenance. GPU kernels are not affected (bitwise reproducibility is promised on CPU).
"""
from __future__ import annotations

import os
import tempfile

PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
}
OPT_OUT = "CTCOUPLING_NATIVE_CPU"


def pin(environ=os.environ) -> None:
    """Fill in the pins that `environ` does not set already (nothing under CTCOUPLING_NATIVE_CPU=1).

    torch.compile's CPU kernels get a cache of their own: inductor's cache key leaves out
    ATEN_CPU_CAPABILITY, and a kernel cached by a native (AVX-512) run and loaded by a pinned one gave
    NaN losses here, the other way round a crash (torch 2.14.1)."""
    if environ.get(OPT_OUT, "") not in ("", "0"):
        return
    for key, value in PINS.items():
        environ.setdefault(key, value)
    environ.setdefault("TORCHINDUCTOR_CACHE_DIR",
                       os.path.join(tempfile.gettempdir(), f"torchinductor_{os.getuid()}_{PINS['ATEN_CPU_CAPABILITY']}"))


def in_effect(environ=os.environ) -> dict[str, str | None]:
    """The switches as this process has them (None: unset, the library's native choice)."""
    return {key: environ.get(key) for key in PINS}
