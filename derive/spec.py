"""Read a cell spec (TOML) into a checked ``Cell``. The file is parsed, never executed.

Equations are read with Python's ``ast`` and accepted only if every node is on a short
whitelist (names, numbers, + - * / ** @, calls of known functions by name); SymPy objects are
then built by hand from that tree. Every name is checked as an identifier, against reserved
words, and against the other names of the spec before anything else sees it.
"""

from __future__ import annotations

import ast
import hashlib
import keyword
import math
import re
import tomllib
from pathlib import Path

import sympy as sp

from .cell import (PREV_SUFFIX, Cell, Equation, Quantity, adjoint_name, carried_name, initial_name,
                   prev_name, upstream_name)
from . import limits, ops
from .errors import SpecError
from .limits import LimitError, short
from .linear import REDUCTIONS, MatVec
from .ops import FUNCTIONS

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: Names a spec may not use, each for a reason. Every name the kernel generator invents starts
#: with ``_`` (a spec name starts with a letter), so only these remain: Python keywords; the
#: functions and reductions equations call; the globals generated kernels read inside functions whose locals
#: are the spec's names (the modules, the builtins and the API functions); and the names the
#: formula reader of verify gives a meaning (``sigma`` is the sigmoid; E, I, pi, oo, nan constants).
#: docs/guide.md lists them; tests/test_codegen_names.py checks the kernels need no other.
GENERATED_CODE_GLOBALS = frozenset({"np", "nb", "range", "reversed", "max", "min", "abs",
                                    "forward", "backward", "init_params"})
FORMULA_NAMES = frozenset({"sigma", "Heaviside", "pi", "E", "I", "oo", "nan"})
RESERVED = (frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | frozenset(FUNCTIONS)
            | frozenset(REDUCTIONS) | GENERATED_CODE_GLOBALS | FORMULA_NAMES)

SECTIONS = {"cell", "sizes", "constants", "inputs", "states", "params", "buffers", "functions",
            "step"}

#: A state given as a table: ``n = { size = "H", init = "ones", domain = "positive" }``.
STATE_KEYS = {"size": None, "init": ("zeros", "ones", "param"), "domain": ("real", "positive")}

#: Free text (a description, the meaning of a size) is copied into generated docstrings and
#: documents: one line of printable characters without quotes or backslashes, so it can never
#: close a string literal or start a TeX command.
TEXT_RE = re.compile(r"^[^\x00-\x1f\x7f\"\\]{0,200}$")


class _Source:
    """The spec text with helpers to find the line a key or an equation sits on."""

    def __init__(self, text: str, path: str | None):
        self.text = text
        self.path = path
        self.lines = text.splitlines()

    def error(self, problem: str, line: int | None = None, equation: str | None = None,
              column: int | None = None, equation_column: int | None = None):
        return SpecError(problem, path=self.path, line=line, equation=equation, column=column,
                         equation_column=equation_column)

    def line_of_key(self, key: str, section: str | None = None) -> int | None:
        in_section = section is None
        pattern = re.compile(rf"""^\s*(["']?){re.escape(key)}\1\s*=""")
        for number, raw in enumerate(self.lines, start=1):
            header = re.match(r"^\s*\[([^\]]+)\]", raw)
            if header:
                if section is None and header.group(1).strip() == key:
                    return number  # the key is a table: [key]
                in_section = section is None or header.group(1).strip() == section
                continue
            if in_section and pattern.match(raw):
                return number
        return None


def load_spec(path: str | Path) -> Cell:
    """Load and check the spec file at ``path`` (a regular file of at most ``limits.SPEC_BYTES``)."""
    try:
        limits.check_argument(str(path), "spec path")
        path = Path(path)
        text = limits.read_text(path, limits.SPEC_BYTES, "spec file")
    except LimitError as exc:
        raise SpecError(exc.problem, path=limits.clip(str(path), 80)) from None
    except OSError as exc:
        raise SpecError(f"cannot read spec file: {exc.strerror}", path=str(path)) from None
    except UnicodeDecodeError:
        raise SpecError("spec file is not UTF-8 text", path=str(path)) from None
    return parse_spec(text, str(path))


def spec_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def parse_spec(text: str, path: str | None = None) -> Cell:
    try:
        limits.check_size(len(text.encode("utf-8", "surrogatepass")), limits.SPEC_BYTES, "spec")
        limits.scan_toml(text)                     # tomllib recurses into nested [ and {
    except LimitError as exc:
        line, column = limits.line_column(text, exc.pos) if exc.pos is not None else (None, None)
        raise SpecError(exc.problem, path=path, line=line, column=column) from None
    src = _Source(text, path)
    if not text.strip():
        raise src.error("the spec file is empty")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise src.error(f"not valid TOML: {exc}", line=int(match.group(1)) if match else None) from None
    except ValueError as exc:               # an integer of more than 4,300 digits
        raise src.error(f"not valid TOML: {limits.clip(str(exc), 120)}") from None
    return _Builder(src, data).build()


def register_function(name: str, definition: str | None = None, *, op: ops.Op | None = None) -> ops.Op:
    """Add a function to the op table for every cell loaded from now on: either ``definition``,
    an expression of ``z`` over known functions read as a spec's ``[functions]`` entry is
    (``register_function("softsign", "z / (1 + abs(z))")``), or a full row ``op``."""
    if (definition is None) == (op is None):
        raise TypeError("register_function takes a definition or op=, not both or neither")
    if name in FUNCTIONS:
        raise ValueError(f"function {name!r} is already in the op table")
    if op is None:
        builder = _Builder(_Source("", None), {})
        builder.define_function(name, definition)
        if name not in builder.functions or builder.aliases.get(name) != name:
            raise SpecError(f"the definition of {name!r} names one function: register it under "
                            "its own name instead")
        op = ops.op_of(builder.functions[name](ops.ARGUMENT))
    elif op.name != name:
        raise ValueError(f"the row is named {op.name!r}, not {name!r}")
    return ops.register(op)


class _Builder:
    def __init__(self, src: _Source, data: dict):
        self.src = src
        self.data = data
        self.quantities: dict[str, Quantity] = {}
        self.sizes: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        self.constants: dict[str, float] = {}
        self.functions: dict = {}      # [functions] name -> SymPy builder
        self.columns: dict[str, int] = {}   # equation text -> its column in the file

    # -- small helpers ----------------------------------------------------------------------
    def table(self, name: str, required: bool = True) -> dict:
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.src.error(f"missing required table [{name}]")
            return {}
        if not isinstance(value, dict):
            raise self.src.error(f"[{name}] must be a table", line=self.src.line_of_key(name))
        return value

    def check_name(self, name: str, section: str, what: str) -> None:
        line = lambda: self.src.line_of_key(name, section)  # noqa: E731 (only on error: O(lines))
        if isinstance(name, str) and len(name) > limits.NAME_CHARS:
            raise self.src.error(f"{what} name {short(name)} in [{section}] is too long: "
                                 f"{len(name):,} characters (limit {limits.NAME_CHARS})", line=line())
        if not isinstance(name, str) or not NAME_RE.match(name) or "__" in name:
            raise self.src.error(
                f"invalid {what} name {short(name)} in [{section}]: use letters, digits and single "
                "underscores, starting with a letter", line=line())
        if name in RESERVED or name in FUNCTIONS:
            raise self.src.error(f"{what} name {name!r} in [{section}] is a reserved word", line=line())

    def check_text(self, value, key: str, section: str) -> str:
        if not isinstance(value, str) or not TEXT_RE.match(value):
            raise self.src.error(f"{key!r} in [{section}] must be one line of text (at most 200 "
                                 "characters, no quotes, backslashes or control characters)",
                                 line=self.src.line_of_key(key, section))
        return value

    def add(self, q: Quantity, section: str) -> None:
        self.check_name(q.name, section, q.role)
        if len(self.quantities) + len(self.sizes) + len(self.aliases) >= limits.NAMES:
            raise self.src.error(f"too many names declared (limit {limits.NAMES})",
                                 line=self.src.line_of_key(q.name, section))
        if (q.name in self.quantities or q.name in self.sizes or q.name in self.aliases
                or q.name in self.constants):
            raise self.src.error(f"duplicate name {q.name!r}: declared more than once",
                                 line=self.src.line_of_key(q.name, section))
        self.quantities[q.name] = q

    def shape_of(self, value, name: str, section: str, ndim: tuple[int, ...]) -> tuple[str, ...]:
        line = lambda: self.src.line_of_key(name, section)  # noqa: E731 (only on error: O(lines))
        shape = (value,) if isinstance(value, str) else value
        if (not isinstance(shape, list | tuple) or len(shape) not in ndim
                or not all(isinstance(s, str) for s in shape)):
            want = " or ".join({1: '"H"', 2: '["H", "D"]'}[n] for n in ndim)
            raise self.src.error(f"{name!r} in [{section}] needs a shape like {want}", line=line())
        for size in shape:
            if size not in self.sizes:
                raise self.src.error(f"{name!r} in [{section}] uses unknown size {short(size)} "
                                     f"(declare it in [sizes])", line=line())
        return tuple(shape)

    # -- the build --------------------------------------------------------------------------
    def build(self) -> Cell:
        unknown = sorted(set(self.data) - SECTIONS)
        if unknown:
            raise self.src.error(f"unknown table [{limits.clip(unknown[0])}] (expected: "
                                 f"{', '.join(sorted(SECTIONS))})",
                                 line=self.src.line_of_key(unknown[0]))
        meta = self.table("cell")
        name = meta.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > limits.NAME_CHARS:
            raise self.src.error("[cell] needs a name made of letters, digits and underscores "
                                 f"(at most {limits.NAME_CHARS} characters)",
                                 line=self.src.line_of_key("name", "cell"))
        description = self.check_text(meta.get("description", ""), "description", "cell")

        for size, doc in self.table("sizes").items():
            self.check_name(size, "sizes", "size")
            self.sizes[size] = self.check_text(doc, size, "sizes")
        if not self.sizes:
            raise self.src.error("[sizes] declares no size")

        for const, value in self.table("constants", required=False).items():
            self.check_name(const, "constants", "constant")
            if const in self.sizes:
                raise self.src.error(f"duplicate name {const!r}: declared more than once",
                                     line=self.src.line_of_key(const, "constants"))
            if (isinstance(value, bool) or not isinstance(value, int | float)
                    or not math.isfinite(value)):
                raise self.src.error(f"constant {const!r} must be a finite number, e.g. {const} = 1e-5",
                                     line=self.src.line_of_key(const, "constants"))
            self.constants[const] = value

        for alias, target in self.table("functions", required=False).items():
            if alias in self.constants:
                raise self.src.error(f"duplicate name {alias!r}: declared more than once",
                                     line=self.src.line_of_key(alias, "functions"))
            self.define_function(alias, target)

        inputs = self.declare("inputs", "input", (1,))
        states = self.declare("states", "state", (1,))
        params = self.declare("params", "param", (1, 2))
        params += self.declare("buffers", "param", (1, 2), trainable=False)
        if not inputs:
            raise self.src.error("[inputs] declares no input")
        if not states:
            raise self.src.error("[states] declares no state")
        for state in states:
            prev = prev_name(state)
            if prev in self.quantities:
                raise self.src.error(f"name {prev!r} is taken: it denotes the previous value of state "
                                     f"{state!r}", line=self.src.line_of_key(prev))
            self.quantities[prev] = Quantity(prev, "prev_state", self.quantities[state].shape,
                                             f"{state} at step t-1")
        initial = {}
        for state in states:
            q = self.quantities[state]
            if q.init == "param":
                initial[state] = initial_name(state)
                if initial[state] in self.quantities:
                    raise self.src.error(f"name {initial[state]!r} is taken: it denotes the learnable "
                                         f"initial value of state {state!r}",
                                         line=self.src.line_of_key(initial[state]))
                self.quantities[initial[state]] = Quantity(initial[state], "initial", q.shape,
                                                           f"initial value of {state}")

        step = self.table("step")
        equations = self.parse_equations(step.get("equations"))
        defined = {eq.lhs for eq in equations}
        for state in states:
            if state not in defined:
                raise self.src.error(f"state {state!r} has no update: add an equation '{state} = ...'",
                                     line=self.src.line_of_key(state, "states"))
        outputs = step.get("outputs")
        if (not isinstance(outputs, list) or not outputs
                or not all(isinstance(o, str) for o in outputs)):
            raise self.src.error('[step] needs outputs = ["h", ...], a non-empty list of names',
                                 line=self.src.line_of_key("outputs", "step"))
        for out in outputs:
            if out not in defined:
                raise self.src.error(f"output {short(out)} is not computed by any equation",
                                     line=self.src.line_of_key("outputs", "step"))
        if len(set(outputs)) != len(outputs):
            raise self.src.error("an output is listed twice", line=self.src.line_of_key("outputs", "step"))
        self.check_used(equations, inputs, params, set(states) | set(outputs))
        self.check_adjoint_names(states, outputs)
        return Cell(name=name, description=description, path=self.src.path, sizes=dict(self.sizes),
                    quantities=dict(self.quantities), inputs=inputs, states=states, params=params,
                    outputs=tuple(outputs), equations=tuple(equations), source_text=self.src.text,
                    functions=dict(self.functions), constants=dict(self.constants),
                    initial=initial)

    def define_function(self, name: str, text) -> None:
        """``f = "sigmoid"`` (an alias) or ``softsign = "z / (1 + abs(z))"``: a function of one
        argument ``z`` over known functions, read by the equation parser (never executed); SymPy
        differentiates it and every stage expands it where it is used."""
        self.check_name(name, "functions", "function")
        line = self.src.line_of_key(name, "functions")
        if not isinstance(text, str):
            raise self.src.error(f"function {name!r} in [functions] must be a string: a known "
                                 'function\'s name or an expression of z, e.g. "z / (1 + abs(z))"',
                                 line=line)
        known = {**FUNCTIONS, **self.functions}
        if text.strip() in known:
            self.aliases[name] = text.strip()
            self.functions[name] = known[text.strip()]
            return
        if NAME_RE.match(text.strip()) and text.strip() != ops.ARGUMENT.name:
            raise self.src.error(f"function alias {name!r} names unknown function {short(text.strip())} "
                                 f"(known: {', '.join(sorted(known))})", line=line)
        parser = _EquationParser(self, arguments={ops.ARGUMENT.name: ("Z",)})
        parser.text, parser.line = f"{name}(z) = {text}", line
        try:
            limits.scan_equation(text)
        except LimitError as exc:
            raise parser.fail(exc.problem) from None
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise parser.fail(f"cannot parse the definition of {name}: {exc.msg}") from None
        body, shape = parser.expr(tree.body)
        if ops.ARGUMENT not in body.free_symbols:
            raise parser.fail(f"the definition of {name} does not use its argument z")
        if body.has(sp.zoo, sp.oo, sp.nan):
            raise parser.fail(f"the definition of {name} is not finite")
        self.aliases[name] = name
        self.functions[name] = ops.define(name, body).sympy

    def declare(self, section: str, role: str, ndim: tuple[int, ...],
                trainable: bool = True) -> tuple[str, ...]:
        names = []
        for qname, value in self.table(section, required=section != "buffers").items():
            self.check_name(qname, section, role)
            if qname.endswith(PREV_SUFFIX):
                raise self.src.error(f"{role} name {qname!r} ends in {PREV_SUFFIX!r}, which is kept "
                                     "for previous values of states", line=self.src.line_of_key(qname, section))
            extra = {}
            if role == "state" and isinstance(value, dict):
                value, extra = self.state_table(qname, value)
            shape = self.shape_of(value, qname, section, ndim)
            if role == "input" and len(shape) != 1:
                raise self.src.error(f"input {qname!r} must be a vector",
                                     line=self.src.line_of_key(qname, section))
            self.add(Quantity(qname, role, shape, trainable=trainable, **extra), section)
            names.append(qname)
        return tuple(names)

    def state_table(self, state: str, table: dict) -> tuple[object, dict[str, str]]:
        """``{ size = "H", init = "ones", domain = "positive" }`` -> (size, Quantity fields)."""
        line = self.src.line_of_key(state, "states")
        unknown = sorted(set(table) - set(STATE_KEYS))
        if unknown:
            raise self.src.error(f"state {state!r}: unknown key {unknown[0]!r} (expected: "
                                 f"{', '.join(STATE_KEYS)})", line=line)
        if "size" not in table:
            raise self.src.error(f'state {state!r} needs a size: {state} = {{ size = "H", ... }}', line=line)
        extra = {}
        for key in ("init", "domain"):
            if key in table:
                if table[key] not in STATE_KEYS[key]:
                    raise self.src.error(f"state {state!r}: {key} must be one of "
                                         f"{', '.join(map(repr, STATE_KEYS[key]))}, not {table[key]!r}",
                                         line=line)
                extra[key] = table[key]
        return table["size"], extra

    def parse_equations(self, block) -> list[Equation]:
        """Read every line, order by dependency (a cycle is an error), then build SymPy."""
        key_line = self.src.line_of_key("equations", "step")
        if not isinstance(block, str) or not block.strip():
            raise self.src.error("[step] needs equations = '''...''' with one equation per line",
                                 line=key_line)
        cursor = (key_line or 1) - 1  # find each equation's line by scanning forward from the key
        block_lines = block.splitlines()
        window = cursor + len(block_lines) + 1      # the block's lines in the file, no further
        texts = [t for t in (raw.split("#", 1)[0].strip() for raw in block_lines) if t]
        if len(texts) > limits.EQUATIONS:
            raise self.src.error(f"too many equations: {len(texts):,} (limit {limits.EQUATIONS})",
                                 line=key_line)
        parser = _EquationParser(self)
        parsed: dict[str, tuple[str, int | None, ast.expr]] = {}
        for text in texts:
            line = None
            for number in range(cursor, min(window, len(self.src.lines))):
                if text in self.src.lines[number]:
                    line, cursor = number + 1, number + 1
                    self.columns[text] = self.src.lines[number].index(text) + 1
                    break
            lhs, value = parser.split(text, line)
            if lhs in parsed:
                raise self.src.error(f"{lhs!r} is assigned twice (each name gets one equation per step)",
                                     line=line, equation=text)
            parsed[lhs] = (text, line, value)
        return [parser.build(lhs, *parsed[lhs]) for lhs in self.order(parsed)]

    def order(self, parsed: dict[str, tuple[str, int | None, ast.expr]]) -> list[str]:
        """Topological order of the equations; a cycle is an error that names its equations."""
        done: list[str] = []
        mark: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(lhs: str, trail: list[str]):
            if mark.get(lhs) == 2:
                return
            text, line, value = parsed[lhs]
            if mark.get(lhs) == 1:
                cycle = trail[trail.index(lhs):] + [lhs]
                hint = ""
                if any(self.quantities.get(q) and self.quantities[q].role == "state" for q in cycle):
                    hint = f" (to use a state's value from step t-1, write its name with '{PREV_SUFFIX}')"
                raise self.src.error("equations form a cycle: " + " -> ".join(cycle) + hint,
                                     line=line, equation=text)
            mark[lhs] = 1
            names = sorted({n.id for n in ast.walk(value) if isinstance(n, ast.Name)})
            for name in names:
                if name in parsed:
                    visit(name, trail + [lhs])
            mark[lhs] = 2
            done.append(lhs)

        for lhs in parsed:
            visit(lhs, [])
        return done

    def check_used(self, equations, inputs, params, sinks) -> None:
        used = set()
        for eq in equations:
            used |= {s.name for s in eq.rhs.free_symbols}
        for name in (*inputs, *params):
            if name not in used:
                role = self.quantities[name].role
                raise self.src.error(f"{role} {name!r} is declared but no equation uses it",
                                     line=self.src.line_of_key(name))
        for eq in equations:
            if eq.lhs not in used and eq.lhs not in sinks:
                raise self.src.error(f"{eq.lhs!r} is computed but never used (not an output, not a state)",
                                     line=eq.line, equation=eq.text)

    def check_adjoint_names(self, states, outputs) -> None:
        """Generated names (dW, dh_next, dh_out) must be unique and not clash with the spec's names."""
        owners: dict[str, str] = {name: f"the quantity {name!r}" for name in self.quantities}
        derived = [(adjoint_name(q), q, f"the adjoint of {q!r}") for q in self.quantities]
        derived += [(carried_name(s), s, f"the adjoint of state {s!r} from step t+1") for s in states]
        derived += [(upstream_name(o), o, f"the upstream gradient of output {o!r}") for o in outputs]
        for name, source, meaning in derived:
            if keyword.iskeyword(name):     # ef, el: the kernels' local variable def, del
                raise self.src.error(f"name {source!r} cannot be used: its adjoint would be {name!r}, "
                                     "a Python keyword; rename it", line=self.src.line_of_key(source))
            if name in owners:
                line = self.src.line_of_key(name) or self.src.line_of_key(source)
                raise self.src.error(f"name {name!r} is ambiguous: it is {owners[name]} and also "
                                     f"{meaning}; rename one of them", line=line)
            owners[name] = meaning


class _EquationParser:
    """ast -> SymPy for one equation, checking names and element shapes on the way."""

    def __init__(self, builder: _Builder, arguments: dict[str, tuple[str, ...]] | None = None):
        self.b = builder
        self.arguments = arguments or {}   # a function definition's argument: name -> shape
        self.operators = 0      # in the equations read so far

    def split(self, text: str, line: int | None) -> tuple[str, ast.expr]:
        """Syntax and left side only: ``name = expression``. The limits are checked first: ``ast``
        and the tree walk below recurse."""
        self.text, self.line = text, line
        try:
            self.operators += limits.scan_equation(text)
        except LimitError as exc:
            raise self.fail(exc.problem, exc.pos) from None
        if self.operators > limits.SPEC_OPERATORS:
            raise self.fail(f"the equations have too many operators: {self.operators:,} so far "
                            f"(limit {limits.SPEC_OPERATORS:,} in one spec)")
        for mark, why in ((";", "one equation per line, without ';'"),
                          ("\\", "an equation is one line, without '\\' continuations")):
            if mark in text:
                raise self.fail(f"{mark!r} is not part of the spec language: {why}", text.index(mark))
        odd = next((i for i, ch in enumerate(text) if not " " <= ch <= "~" and ch != "\t"), None)
        if odd is not None:          # Python would read ｔａｎｈ as tanh and ℎ as h (NFKC)
            raise self.fail(f"character {text[odd]!r} (U+{ord(text[odd]):04X}) is not part of the spec "
                            "language: equations are printable ASCII", odd)
        try:
            tree = ast.parse(text, mode="exec")
        except SyntaxError as exc:
            offset = exc.offset - 1 if exc.offset and exc.lineno == 1 else None
            raise self.fail(f"cannot parse equation: {exc.msg}", offset) from None
        if (len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign)
                or len(tree.body[0].targets) != 1):
            raise self.fail("an equation must read 'name = expression'")
        target = tree.body[0].targets[0]
        if not isinstance(target, ast.Name):
            raise self.fail("the left side of an equation must be a single name")
        lhs = target.id
        self.b.check_name(lhs, "step", "quantity")
        existing = self.b.quantities.get(lhs)
        if existing is not None and existing.role != "state":
            role = existing.role.replace("_", " ")
            raise self.fail(f"{lhs!r} is {'an' if role[0] in 'aeiou' else 'a'} {role} and cannot be assigned")
        if lhs in self.b.aliases:
            raise self.fail(f"{lhs!r} is a function alias and cannot be assigned")
        if lhs in self.b.constants:
            raise self.fail(f"{lhs!r} is a constant and cannot be assigned")
        if lhs.endswith(PREV_SUFFIX):
            raise self.fail(f"names ending in {PREV_SUFFIX!r} denote previous states and cannot be assigned")
        return lhs, tree.body[0].value

    def build(self, lhs: str, text: str, line: int | None, value: ast.expr) -> Equation:
        """SymPy for the right side; names it uses are already built (dependency order)."""
        self.text, self.line = text, line
        rhs, shape = self.expr(value)
        if rhs.has(sp.zoo, sp.oo, sp.nan):
            raise self.fail("the right side is not finite (a division by zero or an infinite constant)")
        try:
            limits.check_numbers(rhs)          # products of constants: 1e300 * 1e300
        except LimitError as exc:
            raise self.fail(exc.problem) from None
        if len(shape) != 1:
            raise self.fail("the right side must be a vector")
        existing = self.b.quantities.get(lhs)
        if existing is not None and existing.shape != shape:
            raise self.fail(f"{lhs!r} is declared with size {existing.shape[0]} but the right side has "
                            f"size {shape[0]}")
        if existing is None:
            self.b.quantities[lhs] = Quantity(lhs, "intermediate", shape)
        return Equation(lhs=lhs, rhs=rhs, text=text, line=line)

    def fail(self, problem: str, offset: int | ast.AST | None = None) -> SpecError:
        """The error at ``offset`` of the equation (a character offset or an ``ast`` node)."""
        if isinstance(offset, ast.AST):
            offset = len(self.text.encode("utf-8")[:offset.col_offset].decode("utf-8", "ignore"))
        start = self.b.columns.get(self.text)
        column = start + offset if start is not None and offset is not None else None
        return self.b.src.error(problem, line=self.line, equation=self.text, column=column,
                                equation_column=offset)

    def expr(self, node: ast.AST) -> tuple[sp.Expr, tuple[str, ...]]:
        """Return (SymPy expression, element shape); () is a plain number."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self.fail(f"only numbers are allowed as constants, not {short(node.value)}", node)
            if isinstance(node.value, float) and not math.isfinite(node.value):
                raise self.fail(f"the constant {ast.unparse(node)} is not a finite number", node)
            if isinstance(node.value, float) and node.value == 0 and any(
                    d in "123456789" for d in re.split("[eE]", ast.get_source_segment(self.text, node))[0]):
                raise self.fail(f"the constant {ast.get_source_segment(self.text, node)} is too small: "
                                "it rounds to 0", node)
            # the decimal the user wrote, exactly (nsimplify would turn 1e-300 into 0)
            number = sp.Rational(repr(node.value)) if isinstance(node.value, float) else sp.Integer(node.value)
            try:
                limits.check_number(number)
            except LimitError as exc:
                raise self.fail(exc.problem, node) from None
            return number, ()
        if isinstance(node, ast.Name):
            return self.name(node.id, node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value, shape = self.expr(node.operand)
            self.elementwise(shape, "unary minus")
            return (-value if isinstance(node.op, ast.USub) else value), shape
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult):
            return self.chain(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        what = {ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambdas",
                ast.Compare: "comparisons", ast.BoolOp: "boolean operators", ast.IfExp: "conditionals",
                ast.List: "lists", ast.Tuple: "tuples", ast.Dict: "dicts", ast.Starred: "starred arguments",
                ast.JoinedStr: "strings", ast.NamedExpr: "assignment expressions"}
        kind = next((v for k, v in what.items() if isinstance(node, k)), type(node).__name__)
        raise self.fail(f"{kind} not allowed in an equation (use names, numbers, + - * / ** @ and "
                        "known functions)", node)

    def name(self, ident: str, node: ast.AST | None = None) -> tuple[sp.Expr, tuple[str, ...]]:
        if self.arguments:
            if ident in self.arguments:
                return sp.Symbol(ident), self.arguments[ident]
            raise self.fail(f"unknown name {short(ident)}: a function's definition may only use its "
                            f"argument {', '.join(self.arguments)}, numbers and known functions", node)
        if ident in self.b.constants:
            value = self.b.constants[ident]
            return (sp.nsimplify(value) if isinstance(value, float) else sp.Integer(value)), ()
        q = self.b.quantities.get(ident)
        if q is not None and q.role == "initial":
            q = None  # the initial value of a state is not a per-step quantity
        if q is None:
            if ident in FUNCTIONS or ident in REDUCTIONS or ident in self.b.aliases:
                raise self.fail(f"function {ident!r} used without a call", node)
            known = sorted(n for n, qq in self.b.quantities.items()
                           if qq.role not in ("intermediate", "initial"))
            listed = ", ".join(known[:12]) + (f", … ({len(known)} in all)" if len(known) > 12 else "")
            raise self.fail(f"unknown name {short(ident)} (declared: {listed}; "
                            "quantities defined by other equations are known too)", node)
        return q.symbol, q.shape

    def elementwise(self, shape, what: str) -> None:
        if len(shape) == 2:
            raise self.fail(f"a matrix cannot take part in {what}: matrices appear only on the left of @")

    def chain(self, node: ast.BinOp):
        """``a + b - c + ...`` or ``a * b * ...`` as one SymPy Add or Mul: built pairwise, SymPy
        re-flattens the growing sum at every step (quadratic time), and the tree walk would
        recurse once per operator."""
        ops = (ast.Add, ast.Sub) if isinstance(node.op, ast.Add | ast.Sub) else (ast.Mult,)
        links = []                                  # (operator node, right operand), right to left
        while isinstance(node, ast.BinOp) and isinstance(node.op, ops):
            links.append(node)
            node = node.left
        value, shape = self.expr(node)
        values = [value]
        for link in reversed(links):
            symbol = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*"}[type(link.op)]
            right, rshape = self.expr(link.right)
            self.elementwise(shape, symbol)
            self.elementwise(rshape, symbol)
            if shape and rshape and shape != rshape:
                raise self.fail(f"size mismatch in {limits.clip(ast.unparse(link))}: {shape[0]} "
                                f"{symbol} {rshape[0]}", link)
            shape = shape or rshape
            values.append(-right if symbol == "-" else right)
        return (sp.Mul(*values) if ops == (ast.Mult,) else sp.Add(*values)), shape

    def binop(self, node: ast.BinOp):
        ops = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**", ast.MatMult: "@"}
        symbol = ops.get(type(node.op))
        if symbol is None:
            raise self.fail(f"operator {type(node.op).__name__} not allowed (use + - * / ** @)")
        left, lshape = self.expr(node.left)
        right, rshape = self.expr(node.right)
        if symbol == "@":
            if not (isinstance(node.left, ast.Name) and len(lshape) == 2):
                raise self.fail("the left operand of @ must be a parameter matrix, e.g. W @ x")
            if len(rshape) != 1:
                raise self.fail("the right operand of @ must be a vector")
            if lshape[1] != rshape[0]:
                raise self.fail(f"shape mismatch in {limits.clip(ast.unparse(node))}: {node.left.id} is "
                                f"{lshape[0]}x{lshape[1]} but the vector has size {rshape[0]}")
            return MatVec(left, right), (lshape[0],)
        self.elementwise(lshape, symbol)
        self.elementwise(rshape, symbol)
        if symbol == "**":
            constant = node.right.operand if isinstance(node.right, ast.UnaryOp) else node.right
            named = isinstance(constant, ast.Name) and constant.id in self.b.constants
            if rshape != () or not (isinstance(constant, ast.Constant) or named):   # 2, -1, 0.5, k
                raise self.fail("the exponent of ** must be a number", node.right)
            try:
                return limits.power(left, right), lshape
            except LimitError as exc:
                raise self.fail(exc.problem, node.right) from None
        if lshape and rshape and lshape != rshape:
            raise self.fail(f"size mismatch in {limits.clip(ast.unparse(node))}: {lshape[0]} {symbol} "
                            f"{rshape[0]}", node)
        shape = lshape or rshape
        result = {"+": lambda: left + right, "-": lambda: left - right, "*": lambda: left * right,
                  "/": lambda: left / right}[symbol]()
        return result, shape

    def call(self, node: ast.Call):
        if isinstance(node.func, ast.Lambda):
            raise self.fail("lambdas not allowed in an equation (use names, numbers, + - * / ** @ "
                            "and known functions)")
        if not isinstance(node.func, ast.Name):
            raise self.fail("only known functions called by name are allowed (no attribute access)")
        fname = node.func.id
        if fname in REDUCTIONS:
            if node.keywords or len(node.args) != 1:
                raise self.fail(f"{fname}() takes exactly one argument")
            arg, shape = self.expr(node.args[0])
            self.elementwise(shape, f"{fname}()")
            if shape == ():
                raise self.fail(f"{fname}() of a plain number: write the number instead")
            return REDUCTIONS[fname](arg), shape
        func = self.b.functions.get(fname) or FUNCTIONS.get(fname)
        if func is None:
            raise self.fail(f"unknown function {short(fname)} (known: {', '.join(sorted({*FUNCTIONS, *REDUCTIONS}))}; "
                            "aliases and definitions go in [functions])", node)
        arity = ops.arity_of(func)
        if node.keywords or len(node.args) != arity:
            raise self.fail(f"{fname}() takes exactly {'one argument' if arity == 1 else f'{arity} arguments'}")
        args, shape = [], ()
        for a in node.args:
            arg, arg_shape = self.expr(a)
            self.elementwise(arg_shape, f"{fname}()")
            if shape and arg_shape and arg_shape != shape:
                raise self.fail(f"size mismatch in {limits.clip(ast.unparse(node))}: {shape[0]} and "
                                f"{arg_shape[0]}", node)
            args.append(arg)
            shape = shape or arg_shape
        if shape == ():             # sqrt(2), sigmoid(eps / 2): a number, folded here
            return self.number_of(func(*args), node), shape
        return func(*args), shape

    def number_of(self, call: sp.Expr, node: ast.AST) -> sp.Expr:
        """A function of numbers only, as the number it is: evaluated once, by the op table's
        NumPy reference (the one the kernels and the interpreter use), so it prints as a number."""
        from .evaluate import value        # evaluate imports this module's Cell types
        import numpy as np
        number = math.nan
        if not call.has(sp.zoo, sp.oo, -sp.oo, sp.nan, sp.I):     # SymPy's log(0), sqrt(-1)
            with np.errstate(all="ignore"):
                number = float(np.real_if_close(value(call, lambda name: {}[name])))   # no names
        if not math.isfinite(number):
            raise self.fail(f"{limits.clip(ast.unparse(node))} is not a finite number ({number})", node)
        folded = sp.Rational(repr(number))    # the shortest decimal that is this double, as literals
        try:
            limits.check_number(folded)
        except LimitError as exc:
            raise self.fail(exc.problem, node) from None
        return folded
