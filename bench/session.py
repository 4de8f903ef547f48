"""One timed run: every case, every method, interleaved, in one environment and thread mode.

Thread modes (the issue's rule: never interleave PyTorch and NumPy in one process at default
threads, their pools spin against each other):

- ``one``: one worker process hosts every method, all thread pools limited to one thread
  (OPENBLAS/OMP/MKL/NUMBA_NUM_THREADS=1 and ``torch.set_num_threads(1)``); methods are
  interleaved call by call, in an order rotated every round;
- ``default``: one worker process per method at default thread counts; the coordinator
  alternates between them a short burst at a time and pauses ``gap`` seconds after each
  burst so the idle pools' spinning threads go to sleep before the next process measures.
- ``passive``: as ``default``, with ``OMP_WAIT_POLICY=PASSIVE`` in every worker: an OpenMP
  worker (torch's intra-op pool) then sleeps between parallel regions instead of spinning on a
  core another pool's threads need (docs/benchmarks.md, the training step).

The coordinator (this process) imports neither NumPy's BLAS nor torch; it only sends commands
and collects wall (and CPU) times. The correctness check runs in the process that hosts torch,
before any timing of the case.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .cases import Case

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
CORETYPE_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def session_env(threads: str, coretype: str, numba_cache: str | None = None) -> dict[str, str]:
    """The environment of the workers: ``coretype`` 'as-set' keeps OPENBLAS_CORETYPE and
    OPENBLAS_L2_SIZE as this process has them, 'unset' removes both (for the workers only).
    ``numba_cache``: a directory of this run's own for Numba's ``cache=True`` files, so that a
    cache written by another process (one that imported a kernel under another module name,
    say) cannot break or change what is timed."""
    env = dict(os.environ)
    if numba_cache:
        env["NUMBA_CACHE_DIR"] = numba_cache
    if coretype == "unset":
        for var in CORETYPE_VARS:
            env.pop(var, None)
    if threads == "one":
        env.update({var: "1" for var in THREAD_VARS})
    if threads == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env["CELLGRAD_BENCH_THREADS"] = threads
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class Worker:
    def __init__(self, methods: list[str], env: dict[str, str]):
        self.methods = methods
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", "--methods", ",".join(methods)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)

    def ask(self, cmd: str, **fields) -> dict:
        self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"benchmark worker for {self.methods} exited "
                               f"(code {self.process.wait()}); its stderr is above")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"benchmark worker for {self.methods}: {cmd}: {reply['error']}")
        return reply

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            self.process.stdin.close()
            self.process.wait()


def run_session(cases: list[Case], methods: list[str], threads: str, coretype: str,
                repeats: int, burst: int, gap: float, progress=print,
                numba_cache: str | None = None) -> dict:
    env = session_env(threads, coretype, numba_cache)
    started = time.monotonic()
    if threads == "one":
        workers = [Worker(list(methods), env)]
        host = {m: workers[0] for m in methods}
        burst, gap = 1, 0.0
    else:
        workers = [Worker([m], env) for m in methods]
        host = dict(zip(methods, workers))
    checker = host.get("torch")
    rounds = math.ceil(repeats / burst)
    rows = []
    try:
        for case in cases:
            status = {}
            for worker in workers:
                status.update(worker.ask("prepare", case=case.as_dict())["status"])
            check = (checker.ask("check")["check"] if checker else
                     {b: {"unavailable": "torch not benchmarked"} for b in ("numpy", "numba")})
            time.sleep(gap)
            ready = [m for m in methods if status[m] == "ok"]
            times: dict[str, list[float]] = {m: [] for m in ready}
            cpu_times: dict[str, list[float]] = {m: [] for m in ready}
            for r in range(rounds):
                shift = r % len(ready) if ready else 0
                for method in ready[shift:] + ready[:shift]:
                    reply = host[method].ask("run", method=method, n=burst)
                    times[method] += reply["times"]
                    cpu_times[method] += reply["cpu_times"]
                    time.sleep(gap)
            for worker in workers:
                worker.ask("release")
            row = {"case": case.as_dict(), "check": check,
                   "median": {m: statistics.median(t) for m, t in times.items()},
                   "min": {m: min(t) for m, t in times.items()},
                   "cpu_median": {m: statistics.median(t) for m, t in cpu_times.items()},
                   "samples": times, "cpu_samples": cpu_times,
                   "unavailable": {m: s for m, s in status.items() if s != "ok"}}
            rows.append(row)
            progress(row)
        info = {",".join(w.methods): w.ask("info")["info"] for w in workers}
    except BaseException:  # interrupted or failed: do not leave workers timing in the background
        for worker in workers:
            worker.kill()
        raise
    for worker in workers:
        worker.close()
    return {"threads": threads, "coretype": coretype, "repeats": rounds * burst, "burst": burst,
            "gap": gap, "rows": rows, "workers": info, "seconds": time.monotonic() - started}
