"""A line describing the machine a benchmark ran on, and a speed anchor measured in the same run."""

from __future__ import annotations

import os
import platform
import time


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {gpu}, python "
            f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads)")


def matmul_anchor_ms(n: int = 512, reps: int = 20) -> float:
    """Median ms of an n x n float32 matmul on the CPU: divide stage times by it to compare machines."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2] * 1000
