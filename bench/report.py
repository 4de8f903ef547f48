"""The benchmark's printed output: one Markdown table per session, its environment, the targets.

Targets (issue 3): the best generated backend is faster than PyTorch (ratio < 1.0) in every row,
and within 1.3x of the GEMM bound at the two larger sizes.
"""

from __future__ import annotations

from .cases import LARGE_SIZES

COLUMNS = ("cell", "T,N,D,H", "dtype", "numpy ms", "numba ms", "torch ms", "bound ms",
           "numpy/torch", "numba/torch", "numpy/bound", "numba/bound", "torch path",
           "check vs torch")
BACKENDS = ("numpy", "numba")
TORCH_TARGET, BOUND_TARGET = 1.0, 1.3


def _ratio(row, a, b, clock="median") -> float | None:
    m = row[clock]
    return m[a] / m[b] if a in m and b in m else None


def _fmt_ratio(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2g}" if value < 0.1 else f"{value:.2f}"


def _fmt_check(result: dict) -> str:
    if "unavailable" in result:
        return "n/a"
    text = f"{result['max_rel_err']:.0e}"
    if result["ok"]:
        return text
    problems = []
    if result["missing"]:
        problems.append("missing " + ", ".join(result["missing"]))
    if not result["dtype_ok"]:
        problems.append("wrong dtype")
    if not problems:
        problems.append(f"worst {result['worst']}")
    return f"FAIL {text} ({'; '.join(problems)})"


class Notes:
    """Footnotes for 'n/a' cells, numbered once per distinct reason."""

    def __init__(self):
        self.reasons: dict[str, int] = {}

    def mark(self, reason: str) -> str:
        number = self.reasons.setdefault(reason, len(self.reasons) + 1)
        return f"n/a [{number}]"

    def lines(self) -> list[str]:
        return [f"[{n}] {reason}" for reason, n in self.reasons.items()]


def table(rows: list[dict], clock: str = "median") -> str:
    """``clock``: 'median' (wall time) or 'cpu_median' (process CPU time)."""
    notes = Notes()
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for row in rows:
        case = row["case"]
        cells = [case["cell"], f"{case['T']},{case['N']},{case['D']},{case['H']}", case["dtype"]]
        for method in ("numpy", "numba", "torch", "bound"):
            if method in row[clock]:
                cells.append(f"{row[clock][method] * 1e3:.3g}")
            else:
                cells.append(notes.mark(f"{method}: {row['unavailable'].get(method, 'not run')}"))
        cells += [_fmt_ratio(_ratio(row, b, "torch", clock)) for b in BACKENDS]
        cells += [_fmt_ratio(_ratio(row, b, "bound", clock)) for b in BACKENDS]
        cells.append(row["check"].get("torch_path", "n/a"))
        cells.append(" / ".join(f"{b} {_fmt_check(row['check'][b])}" for b in BACKENDS))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + notes.lines() if notes.reasons else []))


def best_ratio(row, reference: str, clock="median") -> tuple[float | None, str | None]:
    ratios = {b: _ratio(row, b, reference, clock) for b in BACKENDS}
    ratios = {b: r for b, r in ratios.items() if r is not None}
    if not ratios:
        return None, None
    best = min(ratios, key=ratios.get)
    return ratios[best], best


def targets(rows: list[dict], clock: str = "median") -> list[str]:
    """One line per target: how many rows meet it, and the rows that do not."""
    out = []
    for name, reference, limit, applies in (
            ("best generated < PyTorch", "torch", TORCH_TARGET, lambda c: True),
            ("best generated <= 1.3x GEMM bound (two larger sizes)", "bound", BOUND_TARGET,
             lambda c: (c["T"], c["N"], c["D"], c["H"]) in LARGE_SIZES)):
        judged, misses = 0, []
        for row in rows:
            case = row["case"]
            if not applies(case):
                continue
            ratio, _ = best_ratio(row, reference, clock)
            if ratio is None:
                continue
            judged += 1
            if ratio >= limit if reference == "torch" else ratio > limit:
                misses.append(f"{case['cell']} ({case['T']},{case['N']},{case['D']},{case['H']}) "
                              f"{case['dtype']}: {ratio:.2f}")
        if judged == 0:
            out.append(f"- {name}: not measured")
        else:
            out.append(f"- {name}: met in {judged - len(misses)}/{judged} rows"
                       + (f"; missed: {'; '.join(misses)}" if misses else ""))
    return out


def environment(session: dict) -> list[str]:
    mode = ("one process, every pool at one thread, methods interleaved call by call"
            if session["threads"] == "one" else
            f"one process per method at default threads"
            + (", OMP_WAIT_POLICY=PASSIVE" if session["threads"] == "passive" else "")
            + f", alternating bursts of {session['burst']} with {session['gap']} s pauses")
    lines = [f"- threads: {mode}; median of {session['repeats']} samples per method; "
             f"session took {session['seconds']:.0f} s"]
    for methods, info in session["workers"].items():
        env = ", ".join(f"{k}={v}" for k, v in info["env"].items()) or "none"
        pools = "; ".join(f"{p['library']} ({p['api']} {p['version']}, {p['threads']} threads"
                          + (f", kernel {p['kernel']}" if p.get("kernel") else "") + ")"
                          for p in info["thread_pools"]) or info.get("numpy_blas", "unknown")
        parts = [f"- worker [{methods}]: env {env}; BLAS/OpenMP pools: {pools}"]
        if "torch" in info:
            t = info["torch"]
            parts.append(f"torch {t['version']} {t['threads']} threads (interop "
                         f"{t['interop_threads']}), oneDNN {'on' if t['mkldnn'] else 'off'}, {t['blas']}")
        if "numba" in info:
            parts.append(f"numba {info['numba']['version']} {info['numba']['threads']} threads")
        lines.append("; ".join(parts))
    return lines


def session_title(session: dict) -> str:
    coretype = ("OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE as set" if session["coretype"] == "as-set"
                else "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset")
    threads = {"one": "one thread each", "default": "default threads",
               "passive": "default threads, OMP_WAIT_POLICY=PASSIVE"}[session["threads"]]
    return f"{threads}, {coretype}"


def render(session: dict) -> str:
    lines = [f"### {session_title(session)}", "", *environment(session), "",
             "Wall time:", "", table(session["rows"]), "", "Targets (wall time):",
             *targets(session["rows"]), ""]
    if session["threads"] == "one":
        # Every pool has one thread: the worker's CPU time is the cost of the call even when
        # other processes compete for the cores (wall time then counts their turns too).
        lines += ["Process CPU time (one thread, so insensitive to other load on the machine):", "",
                  table(session["rows"], "cpu_median"), "", "Targets (CPU time):",
                  *targets(session["rows"], "cpu_median"), ""]
    return "\n".join(lines)


TRAIN_COLUMNS = ("threads", "cell", "T,N,D,H", "dtype", "raw ms", "CellRNN ms", "torch ms",
                 "CellRNN/raw", "CellRNN/torch", "raw/torch")
OVERHEAD_TARGET = 1.1   # CellRNN within 10% of the raw kernels


def train_table(sessions: list[dict], clock: str = "median") -> str:
    """One table of every session's training-step rows (``--train``): medians in ms, ratios of
    medians measured in the same session."""
    notes = Notes()
    lines = ["| " + " | ".join(TRAIN_COLUMNS) + " |", "|" + "|".join("---" for _ in TRAIN_COLUMNS) + "|"]
    for session in sessions:
        for row in session["rows"]:
            case = row["case"]
            cells = [session["threads"], case["cell"],
                     f"{case['T']},{case['N']},{case['D']},{case['H']}", case["dtype"]]
            for method in ("raw", "cellrnn", "torch_train"):
                if method in row[clock]:
                    cells.append(f"{row[clock][method] * 1e3:.3g}")
                else:
                    cells.append(notes.mark(f"{method}: {row['unavailable'].get(method, 'not run')}"))
            cells += [_fmt_ratio(_ratio(row, a, b, clock))
                      for a, b in (("cellrnn", "raw"), ("cellrnn", "torch_train"), ("raw", "torch_train"))]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + ([""] + notes.lines() if notes.reasons else []))


def train_targets(sessions: list[dict], clock: str = "median") -> list[str]:
    """CellRNN within 10% of the raw kernels; CellRNN faster than PyTorch where raw is."""
    overhead, speed, judged_speed, judged = [], [], 0, 0
    for session in sessions:
        for row in session["rows"]:
            c = row["case"]
            label = f"{session['threads']} {c['cell']} ({c['T']},{c['N']},{c['D']},{c['H']}) {c['dtype']}"
            ratio = _ratio(row, "cellrnn", "raw", clock)
            if ratio is not None:
                judged += 1
                if ratio > OVERHEAD_TARGET:
                    overhead.append(f"{label}: {ratio:.2f}")
            raw, mine = _ratio(row, "raw", "torch_train", clock), _ratio(row, "cellrnn", "torch_train", clock)
            if raw is not None and mine is not None and raw < 1.0:
                judged_speed += 1
                if mine >= 1.0:
                    speed.append(f"{label}: {mine:.2f} (raw {raw:.2f})")
    return [f"- CellRNN <= 1.1x raw kernels: met in {judged - len(overhead)}/{judged} rows"
            + (f"; missed: {'; '.join(overhead)}" if overhead else ""),
            f"- CellRNN < PyTorch where raw < PyTorch: met in {judged_speed - len(speed)}/{judged_speed} rows"
            + (f"; missed: {'; '.join(speed)}" if speed else "")]


def render_train(sessions: list[dict]) -> str:
    lines = ["### Training step: raw kernels vs CellRNN vs PyTorch", ""]
    for session in sessions:
        lines += environment(session)
    lines += ["", "Wall time, median of one SGD step (forward, loss, backward, update):", "",
              train_table(sessions), "", "Targets (wall time):", *train_targets(sessions), ""]
    return "\n".join(lines)
