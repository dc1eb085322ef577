#!/usr/bin/python3
"""This CPU as the benchmarks report it, and the OpenBLAS core types it runs.

  cpu.py model   the model name from /proc/cpuinfo and the core count
  cpu.py cores   the OPENBLAS_CORETYPE values whose kernels this CPU can run
                 (instruction sets from CPUID flags), fastest kernels last
  cpu.py best    the last of those: the core type to set for OpenBLAS, whose
                 own choice goes by a table of CPU models and falls back to
                 SSE3 (Prescott) kernels on a model it does not know
"""

import os
import sys

# OpenBLAS 0.3.21 core types for x86-64 with AVX2 or more, slowest first, with
# the CPUID flags (as /proc/cpuinfo names them) that their kernels execute.
CORES = [
    ("Haswell", {"avx2", "fma"}),
    ("SkylakeX", {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"}),
    ("Cooperlake", {"avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl",
                    "avx512_bf16"}),
]


def cpuinfo_field(name):
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    return ""


def cores():
    flags = set(cpuinfo_field("flags").split())
    return [name for name, needs in CORES if needs <= flags]


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "model":
        print(f"{cpuinfo_field('model name')}, {os.cpu_count()} cores")
    elif what == "cores":
        print(" ".join(cores()))
    elif what == "best":
        print((cores() or ["Prescott"])[-1])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
