"""The one error a formula the verifier cannot read raises: it says what and where."""

from __future__ import annotations


class VerifyError(ValueError):
    """Unreadable input (formula, quantity, notation). ``str(err)`` is one line.

    ``where`` is a short excerpt of the formula as the user typed it (not its normalized
    spelling) with a caret-like marker ``⟪…⟫`` around the part that could not be read, so the
    user sees exactly what stopped the reader.
    """

    def __init__(self, problem: str, where: str | None = None):
        self.problem = problem
        self.where = where
        message = problem if not where else f"{problem} at: {where}"
        super().__init__(" ".join(message.splitlines()))   # one line, even for a multi-line formula


def excerpt(text: str, start: int, end: int | None = None, width: int = 30) -> str:
    """``…before⟪bad⟫after…`` around text[start:end], at most about 80 characters in all."""
    end = start + 1 if end is None else max(end, start + 1)
    left = max(0, start - width)
    right = min(len(text), end + width)
    bad = text[start:end] if end - start <= width else f"{text[start:start + width // 2]}…" \
        f"{text[end - width // 2:end]}"
    return ("…" if left else "") + text[left:start] + "⟪" + bad + "⟫" + \
        text[end:right] + ("…" if right < len(text) else "")
