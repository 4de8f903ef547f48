"""Child process of tests/test_hostile.py: runs hostile cases under a memory limit and a CPU-time
limit per input, printing one JSON line per case.

    python tests/hostile_runner.py CANARY_DIR WORK_DIR CASE_ID ...

Before each case a ``{"start": id}`` line, after it ``{"id", "outcome", "message", "seconds"}``:
outcome "refused" (the project's own error), "accepted", "crash" (any other exception, with
where it came from) or "timeout" (more than SECONDS of CPU time). Should the process die (the
memory limit, a hard CPU limit), the parent blames the case that started last.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path

SECONDS = 5                 # CPU time per input
MEMORY = 2 << 30            # bytes of address space for the whole child

HERE = Path(__file__).resolve().parent


class CaseTimeout(BaseException):
    """Raised by the CPU timer; a BaseException so that no ``except Exception`` swallows it."""


def _on_timer(signum, frame):
    raise CaseTimeout()


@contextlib.contextmanager
def cpu_limit(seconds: float = SECONDS):
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    last = frames[-1] if frames else None
    return f" (raised at {Path(last.filename).name}:{last.lineno} in {last.name})" if last else ""


class Runner:
    def __init__(self, canary_dir: Path, work_dir: Path):
        self.canary = str(canary_dir / "ran")
        self.work = work_dir

    def fill(self, value):
        """``{CANARY}`` -> the canary path, in text, bytes and nested tuples/lists."""
        if isinstance(value, str):
            return value.replace("{CANARY}", self.canary)
        if isinstance(value, bytes):
            return value.replace(b"{CANARY}", self.canary.encode())
        if isinstance(value, list | tuple):
            return type(value)(self.fill(v) for v in value)
        return value

    # one function per entry point: (outcome, message) ----------------------------------------
    def spec(self, text):
        from derive import SpecError, load_spec
        path = self.work / "case.toml"
        data = self.fill(text)
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
        try:
            cell = load_spec(path)
        except SpecError as err:
            return "refused", str(err)
        return "accepted", f"cell {cell.name}"

    def formula(self, request):
        from derive import SpecError
        from derive.notation import NotationError
        from derive.verify import VerifyError, verify
        cell, text, quantity, notation = self.fill(request)
        try:
            verdict = verify(cell, text, quantity=quantity, notation=notation)
        except (VerifyError, SpecError, NotationError) as err:
            return "refused", str(err)
        if verdict.verdict == "unreadable":
            return "refused", verdict.detail
        return "accepted", verdict.verdict

    def notation(self, payload):
        """A notation file the user wrote, used to read one formula."""
        from derive import SpecError
        from derive.notation import NotationError
        from derive.verify import VerifyError, verify
        cell, text, formula = self.fill(payload)
        path = self.work / "notation.toml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            verdict = verify(cell, formula, notation=str(path))
        except (VerifyError, SpecError, NotationError) as err:
            return "refused", str(err)
        return "accepted", verdict.verdict

    def document(self, payload):
        """A document's text, every formula in it judged (``cellgrad verify --document``)."""
        from derive import SpecError
        from derive.notation import NotationError
        from derive.verify import VerifyError
        from derive.verify.document import verify_document
        text, notation = self.fill(payload)
        try:
            rows = verify_document(text, notation=notation)
        except (VerifyError, SpecError, NotationError) as err:
            return "refused", str(err)
        return "accepted", f"{len(rows)} formulas"

    def kernel(self, payload):
        call, cell = payload
        module = importlib.import_module(f"generated.{cell}_numpy")
        try:
            call(module)
        except (TypeError, ValueError, KeyError) as err:
            frames = traceback.extract_tb(err.__traceback__)
            if frames and Path(frames[-1].filename).resolve() == Path(module.__file__).resolve():
                return "refused", str(err)       # the module's own check, not deep in NumPy
            raise
        return "accepted", "returned"

    def cli(self, argv):
        from cellgrad.cli import main
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(self.fill(list(argv)))
            except SystemExit as exc:            # argparse: usage errors
                code = exc.code
        message = err.getvalue().strip()
        if code in (0, None):
            return "accepted", out.getvalue()[-200:]
        if not message or "Traceback" in message or "internal error" in message:
            return "crash", f"exit code {code}, stderr: {message[-500:]!r}"
        return "refused", message

    def hypothesis(self, kind):
        from hostile_hypothesis import run_hypothesis
        run_hypothesis(kind, self)
        return "accepted", "every example ended cleanly"

    def outcome(self, entry, payload):
        """Run one input under the CPU limit: ("refused" | "accepted" | "crash" | "timeout", msg)."""
        try:
            if entry == "hypothesis":                # each example has its own limit
                return self.hypothesis(payload)
            with cpu_limit():
                return getattr(self, entry)(payload)
        except CaseTimeout:
            return "timeout", f"more than {SECONDS} s of CPU time"
        except Exception as exc:               # noqa: BLE001 - reported, not hidden
            return "crash", f"{type(exc).__name__}: {str(exc)[:300]}{where(exc)}"


def main(argv: list[str]) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    signal.signal(signal.SIGPROF, _on_timer)
    canary_dir, work_dir, ids = Path(argv[0]), Path(argv[1]), argv[2:]
    sys.path.insert(0, str(HERE))
    from hostile_corpus import CASES
    import derive.verify  # noqa: F401  imports are the process's start-up, not any case's time
    import cellgrad.cli  # noqa: F401
    import numpy  # noqa: F401
    by_id = {c.id: c for c in CASES}
    runner = Runner(canary_dir, work_dir)
    for case_id in ids:
        case = by_id[case_id]
        print(json.dumps({"start": case_id}), flush=True)
        with cpu_limit(60):                      # building a payload is the corpus's own work
            payload = case.payload if case.entry == "kernel" else case.payload()
        start = time.process_time()
        outcome, message = runner.outcome(case.entry, payload)
        print(json.dumps({"id": case_id, "outcome": outcome, "message": message,
                          "seconds": round(time.process_time() - start, 3)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
