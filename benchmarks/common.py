"""Shared pieces of the MoMoK benchmarks: the machine's matmul rate, peak memory, timing, child processes.

Peak memory of a measurement is the peak resident set size (``ru_maxrss``) of a fresh Python process that
does only that measurement (``tracemalloc`` does not see torch's allocations); on CUDA it is
``torch.cuda.max_memory_allocated``. Timings are wall-clock, with ``torch.cuda.synchronize`` on CUDA.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULT_PREFIX = "RESULT "


def setup_device(device: str, threads: int, tf32: bool = False) -> torch.device:
    """Thread count and matmul precision; returns the torch device."""
    torch.set_num_threads(threads)
    if tf32:  # TF32 tensor cores on Ampere+ GPUs (float32 matmuls with a 10-bit mantissa)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    """Wall time of one call of ``fn``, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 20, dtype=torch.float32) -> dict:
    """The measured rate of ``torch.matmul`` of two ``size × size`` float32 matrices: median and best
    GFLOP/s over ``repeats`` calls (2·size³ FLOPs each), after two warm-up calls."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    for _ in range(2):
        torch.matmul(a, b)
    times = [timed(lambda: torch.matmul(a, b), device) for _ in range(repeats)]
    flops = 2.0 * size**3
    return {
        "size": size,
        "median_gflops": flops / statistics.median(times) / 1e9,
        "best_gflops": flops / min(times) / 1e9,
        "times_s": times,
    }


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far of this process (CPU: peak RSS) or of the CUDA allocator, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def emit(result: dict) -> None:
    """Print a child's result as one JSON line for the parent."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(script: Path, args: list[str], timeout: float | None = None) -> dict:
    """Run ``script args`` in a fresh Python process (its own peak memory) and return its result."""
    command = [sys.executable, str(script), *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def load_average() -> str:
    """The 1/5/15-minute load averages and the CPU count (the machine may be shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} CPUs"
