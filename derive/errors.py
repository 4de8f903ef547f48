"""The one error type a bad spec raises: it always says where (file, line, equation) and what."""

from __future__ import annotations

from .limits import quote


class SpecError(ValueError):
    """A cell spec is malformed. ``str(err)`` is one line:
    ``file:line[:column]: problem [in equation: ...]``, quoting at most 80 characters of the
    equation (around the column when there is one)."""

    def __init__(self, problem: str, *, path: str | None = None, line: int | None = None,
                 equation: str | None = None, column: int | None = None,
                 equation_column: int | None = None):
        self.problem = problem
        self.path = path
        self.line = line
        self.column = column
        self.equation = equation
        self.equation_column = equation_column   # 0-based offset of `column` in `equation`
        super().__init__(self._message())

    def _message(self) -> str:
        where = self.path if self.path is not None else "<spec>"
        if len(where) > 200:
            where = f"{where[:100]}…{where[-100:]}"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.problem}"
        if self.equation:
            text += f" [in equation: {quote(self.equation, self.equation_column)}]"
        return " ".join(text.splitlines())
