"""A timing process: hosts some methods and runs them when the coordinator says so.

Protocol: one JSON object per line on stdin, one reply per line on the original stdout
(anything else the libraries print goes to stderr). Commands: ``prepare`` a case (builds the
data, prepares each hosted method and warms it up, compiling Numba), ``run`` one method n times
(returns wall and CPU times), ``check`` the kernels against torch, ``info`` (environment),
``release`` the case, ``quit``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import traceback

from .cases import Case, make_data
from .check import check
from .environment import describe
from .methods import Unavailable, prepare

WARMUP = 2


def time_calls(call, n: int) -> tuple[list[float], list[float]]:
    """Wall times and process CPU times of n consecutive calls; the garbage collector waits
    until they are done. With every pool at one thread, CPU time is what the call costs
    whatever else the machine runs; with several threads it also counts spinning workers."""
    wall, cpu = [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(n):
            start, start_cpu = time.perf_counter(), time.process_time()
            call()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    finally:
        gc.enable()
    return wall, cpu


class Host:
    def __init__(self, methods: list[str]):
        self.methods = methods
        self.case = self.data = None
        self.calls: dict = {}

    def prepare(self, case: dict) -> dict:
        self.case = Case(**case)
        self.data = make_data(self.case)
        status = {}
        for method in self.methods:
            try:
                call = prepare(method, self.case, self.data)
                for _ in range(WARMUP):
                    call()
            except Unavailable as err:
                status[method] = str(err)
                continue
            except Exception as err:  # a broken kernel is a row to report, not a crashed run
                traceback.print_exc()
                status[method] = f"failed: {type(err).__name__}: {err}"
                continue
            self.calls[method] = call
            status[method] = "ok"
        return {"status": status}

    def run(self, method: str, n: int) -> dict:
        wall, cpu = time_calls(self.calls[method], n)
        return {"times": wall, "cpu_times": cpu}

    def check(self) -> dict:
        return {"check": check(self.case, self.data)}

    def release(self) -> dict:
        self.case = self.data = None
        self.calls.clear()
        gc.collect()
        return {}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker")
    parser.add_argument("--methods", required=True, help="comma-separated methods to host")
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not break the protocol
    if os.environ.get("CELLGRAD_BENCH_THREADS") == "one":
        try:  # the environment variables already say 1; this also covers pools they miss
            from threadpoolctl import threadpool_limits
            threadpool_limits(1)
        except ImportError:
            pass
    host = Host(args.methods.split(","))
    for line in sys.stdin:
        command = json.loads(line)
        name = command.pop("cmd")
        if name == "quit":
            break
        if name == "info":
            reply = {"info": describe()}
        else:
            try:
                reply = getattr(host, name)(**command)
            except Exception as err:
                traceback.print_exc()
                reply = {"error": f"{type(err).__name__}: {err}"}
        replies.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
