"""Benchmark of the generated BPTT kernels against PyTorch on the CPU and the GEMM-only bound.

Run ``python -m bench.run`` (or ``cellgrad bench``); see docs/benchmarks.md. Speed is measured
here only, never asserted in tests.
"""
