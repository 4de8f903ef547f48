"""The one error a formula the verifier cannot read raises: it says what and where."""

from __future__ import annotations

from dataclasses import dataclass

#: characters of the typed line shown on each side of the place (the quote stays short)
WIDTH = 36


@dataclass(frozen=True)
class Place:
    """Characters [start, end) of the formula as the user typed it (not its normalized spelling).

    ``str(place)`` is one line (``column 12: z^{<t>}``) for tables; ``caret()`` gives the two
    lines a terminal shows: the typed line and a caret line under the place."""

    text: str
    start: int
    end: int

    def _line(self) -> tuple[int, int, str, int, int]:
        """(line number, column, the typed line, start and end of the place in that line)."""
        start = max(0, min(self.start, len(self.text)))
        first = self.text.rfind("\n", 0, start) + 1
        last = self.text.find("\n", start)
        last = len(self.text) if last < 0 else last
        end = max(start + 1, min(self.end, last))
        return self.text.count("\n", 0, start) + 1, start - first + 1, self.text[first:last], \
            start - first, end - first

    @property
    def column(self) -> int:
        return self._line()[1]

    def __str__(self) -> str:
        line, column, typed, a, b = self._line()
        bad = typed[a:b] if b - a <= WIDTH else typed[a:a + WIDTH - 1] + "…"
        where = f"line {line}, column {column}" if "\n" in self.text else f"column {column}"
        return f"{where}: {bad.strip()}" if bad.strip() else f"{where} (the end)" \
            if a >= len(typed) else f"{where}: {bad!r}"

    def caret(self) -> list[str]:
        """The typed line (clipped around the place) and ``^`` under the place."""
        _, _, typed, a, b = self._line()
        left = max(0, a - WIDTH)
        right = min(len(typed), max(b, a + 1) + WIDTH)
        shown = ("…" if left else "") + typed[left:right] + ("…" if right < len(typed) else "")
        offset = a - left + (1 if left else 0)
        marks = "^" * max(1, min(b, right) - a)
        return [shown, " " * offset + marks]


class VerifyError(ValueError):
    """Unreadable input (formula, quantity, notation). ``str(err)`` is one line.

    ``where`` is a ``Place`` in the formula as the user typed it (or a short text), so the user
    sees exactly what stopped the reader: ``caret()`` quotes the typed line with a caret line
    under the place."""

    def __init__(self, problem: str, where: "Place | str | None" = None):
        self.problem = problem
        self.where = where
        message = problem if not where else f"{problem} at {where}"
        super().__init__(" ".join(message.splitlines()))   # one line, even for a multi-line formula

    def caret(self) -> list[str]:
        return self.where.caret() if isinstance(self.where, Place) else []


def excerpt(text: str, start: int, end: int | None = None) -> Place:
    """The place text[start:end] (one character when ``end`` is None)."""
    return Place(text, start, start + 1 if end is None else max(end, start + 1))
