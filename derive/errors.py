"""The one error type a bad spec raises: it always says where (file, line, equation) and what."""

from __future__ import annotations


class SpecError(ValueError):
    """A cell spec is malformed. ``str(err)`` is one line: ``file:line: problem [in equation: ...]``."""

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None,
                 equation: str | None = None):
        self.problem = problem
        self.path = path
        self.line = line
        self.equation = equation
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        text = f"{where}: {self.problem}"
        if self.equation:
            text += f" [in equation: {self.equation}]"
        return text
