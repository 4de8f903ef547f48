"""Derivation documents: the equations they print are the derivation's, in every notation.

The main check reads the emitted LaTeX back into SymPy with a small reader written here, and
compares it with the derived expressions. The reader does not use cellgrad's printer or its
notation code: documents are rendered in a probe notation whose symbols (``v_{3,t}``) this
file decodes by its own rules, so a wrong symbol, a dropped term, a wrong transpose or a
mis-tagged equation makes the comparison fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sympy as sp

from codegen.documents import (DOCS_DIR, REPO_ROOT, build_document, builtin_outputs,
                               document_text, render)
from derive import builtin_cells, derive, load_cell
from derive import ops
from derive.ops import sigmoid
from derive.linear import MatVec, MatVecT, Outer, RowMean, RowSum
from derive.notation import NotationError, load_notation


# -- a probe notation and an independent reader of the LaTeX it produces -------------------------

def probe_notation(tmp_path: Path, derivation) -> tuple[object, dict[str, str]]:
    """Every name k-th name -> ``v_{k}``; adjoint D#, upstream U#, carried C#; time as subscript."""
    bases = [n for n in derivation.quantities if not n.endswith("_prev")]
    index = {name: k for k, name in enumerate(bases, start=1)}
    lines = ['[notation]', 'name = "probe"', 'time = "sub"', "adjoint = 'D#'", "upstream = 'U#'",
             "carried = 'C#'", "[symbols]"]
    lines += [f"{name} = 'v_{{{k}}}'" for name, k in index.items()]
    path = tmp_path / "probe.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_notation(path), {f"v_{{{k}}}": name for name, k in index.items()}


class Reader:
    """LaTeX (as the documents print it) -> SymPy, for the probe notation.

    Per sample: ``M v`` is W v, ``M^{\\top} v`` is W^T v, ``v w^{\\top}`` is an outer product.
    Batch (rows = samples): ``v M^{\\top}`` is W v, ``v M`` is W^T v, ``v^{\\top} w`` is outer.
    ``\\frac{a}{b}``, ``\\sqrt{a}`` (a square root, whichever way the cell wrote it: compare
    with ``same``), ``e^{a}``, ``\\max`` and ``\\min`` of two arguments, and the words of
    ``OPERATORS`` (``\\operatorname{mean}\\left(v\\right)`` is the row mean of v) are read too.
    """

    TOKEN = re.compile(r"""\s*(?:
        (?P<sym>[DUC]?v_\{\d+(?:,t(?:-1)?)?\})
      | (?P<num>\d+)
      | (?P<cmd>\\left\(|\\right\)|\\odot|\\sigma|\\tanh|\\log|\\quad|\\mathrel\{\+\}=
               |\\frac|\\sqrt|\\max|\\min|\\operatorname\{[a-z]+\}|e\^)
      | (?P<sup>\^\{(?:\\top|\d+)\})
      | (?P<op>[-+=(){}&,])
    )""", re.VERBOSE)

    #: ``\\operatorname{word}`` -> what it denotes (the reductions and the named functions)
    OPERATORS = {"mean": RowMean, "sum": RowSum, "sign": ops.sign, "step": ops.step,
                 "relu": ops.relu, "softplus": ops.softplus}
    #: two-argument commands
    PAIRS = {r"\max": ops.max_, r"\min": ops.min_}

    def __init__(self, names: dict[str, str], derivation, batch: bool = False):
        self.names = names
        self.d = derivation
        self.batch = batch

    def name_of(self, token: str) -> str:
        m = re.fullmatch(r"([DUC]?)(v_\{\d+)(?:,(t(?:-1)?))?\}", token)
        prefix, base, step = m.group(1), m.group(2) + "}", m.group(3)
        name = self.names[base]
        if prefix == "":
            return name + "_prev" if step == "t-1" else name
        if prefix == "D":
            assert step != "t-1", token
            return "d" + name
        if prefix == "U":
            return f"d{name}_out"
        return f"d{name}_next" if step == "t" else f"d{name}_prev"

    def tokens(self, text: str) -> list[tuple[str, str]]:
        out, pos = [], 0
        text = text.replace(r"\\", " ").replace("&", " ")
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = self.TOKEN.match(text, pos)
            if not m:
                raise ValueError(f"cannot read {text[pos:pos + 30]!r} in {text!r}")
            kind = m.lastgroup
            out.append((kind, m.group(kind)))
            pos = m.end()
        return [t for t in out if t != ("cmd", r"\quad")]

    def parse(self, text: str):
        self.toks = self.tokens(text)
        self.pos = 0
        value = self.expr()
        assert self.pos == len(self.toks), f"unread: {self.toks[self.pos:]}"
        return value

    def parse_equation(self, text: str) -> tuple[str, str, sp.Expr]:
        m = re.fullmatch(r"\s*(\S+)\s*&?\s*(=|\\mathrel\{\+\}=)(.*)", text, re.S)
        return self.name_of(m.group(1)), ("+=" if "+" in m.group(2) else "="), self.parse(m.group(3))

    def peek(self):
        return self.toks[self.pos] if self.pos < len(self.toks) else (None, None)

    def take(self, value=None):
        tok = self.peek()
        if value is not None and tok[1] != value:
            raise ValueError(f"expected {value!r}, got {tok!r}")
        self.pos += 1
        return tok

    def expr(self):
        sign = 1
        if self.peek()[1] in "+-" and self.peek()[1]:
            sign = -1 if self.take()[1] == "-" else 1
        value = sign * self.term()
        while self.peek()[1] in ("+", "-"):
            sign = -1 if self.take()[1] == "-" else 1
            value += sign * self.term()
        return value

    def term(self):
        factors = [self.factor()]
        while True:
            kind, val = self.peek()
            if val == r"\odot":
                self.take()
                factors.append(("*",))
                factors.append(self.factor())
            elif kind in ("sym", "num", "cmd") and val not in (r"\right)",) or val in ("(", "{") \
                    or val == r"\left(":
                factors.append(self.factor())
            else:
                break
        return self.fold(factors)

    def is_matrix(self, value) -> bool:
        return isinstance(value, sp.Symbol) and value.name in self.d.quantities \
            and self.d.quantities[value.name].is_matrix

    def fold(self, factors):
        """Juxtaposed factors: linear nodes where a matrix or a transpose is involved."""
        items = [f for f in factors if f != ("*",)]
        result = []
        k = 0
        while k < len(items):
            value, transposed = items[k]
            if not self.batch and self.is_matrix(value):
                vector = items[k + 1][0]
                result.append(MatVecT(value, vector) if transposed else MatVec(value, vector))
                k += 2
                continue
            if self.batch and k + 1 < len(items) and self.is_matrix(items[k + 1][0]):
                matrix, t = items[k + 1]
                result.append(MatVec(matrix, value) if t else MatVecT(matrix, value))
                k += 2
                continue
            if not self.batch and transposed:
                result[-1] = Outer(result[-1], value)
            elif self.batch and transposed:
                result.append(Outer(value, items[k + 1][0]))
                k += 2
                continue
            else:
                result.append(value)
            k += 1
        return sp.Mul(*result)

    def factor(self):
        value = self.primary()
        transposed = False
        while self.peek()[0] == "sup":
            sup = self.take()[1]
            if "top" in sup:
                transposed = True
            else:
                value = value ** int(sup[2:-1])
        return value, transposed

    def group(self):
        """``\\left( e \\right)`` or ``{ e }``."""
        if self.peek()[1] == r"\left(":
            self.take()
            value = self.expr()
            self.take(r"\right)")
            return value
        self.take("{")
        value = self.expr()
        self.take("}")
        return value

    def arguments(self) -> list:
        """``\\left( e, e, ... \\right)``."""
        self.take(r"\left(")
        values = [self.expr()]
        while self.peek()[1] == ",":
            self.take()
            values.append(self.expr())
        self.take(r"\right)")
        return values

    def primary(self):
        kind, val = self.peek()
        if kind == "sym":
            self.take()
            return sp.Symbol(self.name_of(val))
        if kind == "num":
            self.take()
            return sp.Integer(val)
        if val in (r"\left(", "{"):
            return self.group()
        if val == r"\sigma":
            self.take()
            return sigmoid(self.group())
        if val == r"\frac":
            self.take()
            numerator = self.group()
            return numerator / self.group()
        if val == r"\sqrt":
            self.take()
            return sp.sqrt(self.group())
        if val == "e^":
            self.take()
            return sp.exp(self.group())
        if val in self.PAIRS:
            self.take()
            a, b = self.arguments()
            return self.PAIRS[val](a, b)
        if val.startswith(r"\operatorname{"):
            self.take()
            (arg,) = self.arguments()
            return self.OPERATORS[val[len(r"\operatorname{"):-1]](arg)
        if val in (r"\tanh", r"\log"):
            self.take()
            power = 1
            if self.peek()[0] == "sup":
                power = int(self.take()[1][2:-1])
            fn = sp.tanh if val == r"\tanh" else sp.log
            return fn(self.group()) ** power
        raise ValueError(f"unexpected {val!r}")


def same(read, derived) -> bool:
    """``read`` equals ``derived``: a square root reads as SymPy's, whether the cell wrote
    ``sqrt(v)`` (the op table's function) or ``v ** 0.5``."""
    return sp.expand(read - derived.replace(ops.sqrt, sp.sqrt)) == 0


def display_equations(markdown: str) -> list[tuple[str, str | None]]:
    """(body, tag) of each $$ block, aligned rows joined."""
    out = []
    for block in re.findall(r"\$\$\n(.*?)\n\$\$", markdown, re.S):
        tag = re.search(r"\\tag\{(\w+)\}", block)
        body = re.sub(r"\\tag\{\w+\}", "", block)
        body = body.replace(r"\begin{aligned}", "").replace(r"\end{aligned}", "").strip()
        out.append((body, tag.group(1) if tag else None))
    return out


def section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


# -- the equations are the derivation's ---------------------------------------------------------

@pytest.mark.parametrize("cell", builtin_cells())
def test_forward_and_backward_equations_read_back_equal_the_derivation(cell, tmp_path):
    d = derive(load_cell(cell))
    notation, names = probe_notation(tmp_path, d)
    md = render(build_document(d, notation), "md")
    read = Reader(names, d)

    forward = [eq for eq in display_equations(section(md, "Forward pass, step t"))]
    assert [tag for _, tag in forward] == [eq.tag for eq in d.forward]
    for (body, tag), eq in zip(forward, d.forward):
        lhs, op, rhs = read.parse_equation(body)
        assert (lhs, op) == (eq.lhs, "=")
        assert same(rhs, eq.rhs), f"{tag}: read {rhs}, derived {eq.rhs}"

    backward = display_equations(section(md, "Backward equations of one step"))
    assert [tag for _, tag in backward] == [eq.tag for eq in d.backward]
    for (body, tag), eq in zip(backward, d.backward):
        lhs, op, rhs = read.parse_equation(body)
        assert lhs == eq.target and op == ("+=" if eq.accumulates else "=")
        assert same(rhs, eq.expr), f"{tag}: read {rhs}, derived {eq.expr}"


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole_lstm", "minimal_rnn"])
def test_batch_forms_read_back_equal_the_derivation(cell, tmp_path):
    d = derive(load_cell(cell))
    notation, names = probe_notation(tmp_path, d)
    md = render(build_document(d, notation), "md")
    read = Reader(names, d, batch=True)
    tagged = [(body, tag) for body, tag in display_equations(section(md, "Batch form and shapes"))
              if tag]
    assert tagged, "no batch equations"
    for body, tag in tagged:
        eq = next(e for e in d.backward if e.tag == tag)
        if eq.accumulates and not d.quantities[eq.of].is_matrix:
            body = re.sub(r"\\sum_\{n=1\}\^\{N\} \\left\[(.*)\\right\]_\{n\}", r"\1", body)
        lhs, op, rhs = read.parse_equation(body)
        assert lhs == eq.target
        assert sp.expand(rhs - eq.expr) == 0, f"{tag}: read {rhs}, derived {eq.expr}"
    matrix_grads = [e.tag for e in d.param_grads if d.quantities[e.of].is_matrix]
    assert set(matrix_grads) <= {tag for _, tag in tagged}


def test_fork_sums_are_written_out_branch_by_branch(tmp_path):
    d = derive(load_cell("lstm"))
    notation, names = probe_notation(tmp_path, d)
    doc = build_document(d, notation)
    steps = {s.tag: s for sec in doc.sections for s in sec.steps}
    for eq in d.backward:
        assert len(steps[eq.tag].branches) == len(eq.branches)
    dc = d.backward_eq("dc")
    assert dc.is_fork
    read = Reader(names, d)
    last = steps[dc.tag].result.lines[-1].replace("&=", "", 1)
    assert sp.expand(read.parse(last) - dc.expr) == 0
    md = render(doc, "md")
    forks = section(md, "Forks of the computation graph")
    assert sum(1 for line in forks.splitlines() if line.startswith("- ")) == len(d.forks)


def test_truncated_section_shows_the_one_step_equations(tmp_path):
    d = derive(load_cell("minimal_rnn"))
    short = derive(load_cell("minimal_rnn"), truncate=1)
    notation, names = probe_notation(tmp_path, d)
    md = render(build_document(d, notation), "md")
    read = Reader(names, d)
    shown = display_equations(section(md, "Truncated BPTT"))
    changed = [cut for full, cut in zip(d.backward, short.backward) if full.expr != cut.expr]
    assert len(shown) == len(changed) >= 1
    for (body, _), eq in zip(shown, changed):
        lhs, _, rhs = read.parse_equation(body)
        assert lhs == eq.target and sp.expand(rhs - eq.expr) == 0
    assert "seed 001" in section(md, "Truncated BPTT")


def test_reader_rejects_a_wrong_equation(tmp_path):
    """The oracle can fail: a dropped branch or a missing transpose is noticed."""
    d = derive(load_cell("lstm"))
    notation, names = probe_notation(tmp_path, d)
    read = Reader(names, d)
    md = render(build_document(d, notation), "md")
    body, tag = display_equations(section(md, "Backward equations of one step"))[1]
    dropped = body.split(" + ", 1)[1]
    lhs, _, rhs = read.parse_equation(body.split("=")[0] + "= " + dropped)
    assert sp.expand(rhs - d.backward_eq(tag and "dc").expr) != 0
    body11 = next(b for b, t in display_equations(section(md, "Backward equations of one step"))
                  if t == d.backward_eq("dh_prev").tag)
    _, _, rhs = read.parse_equation(body11.replace(r"^{\top}", "", 1))
    assert sp.expand(rhs - d.backward_eq("dh_prev").expr) != 0


@pytest.mark.parametrize("cell, printed, changed", [
    ("layernorm_lstm", r"\operatorname{mean}", r"\operatorname{sum}"),
    ("layernorm_lstm", r"\sqrt{", "{"),
    ("slstm", r"\max", r"\min"),
    ("slstm", "e^{", "{"),
    ("slstm", r"\frac{1}{2}", "1"),
])
def test_reader_reads_reductions_roots_max_exp_and_fractions_and_notices_a_change(
        cell, printed, changed, tmp_path):
    """The new constructs are really read: each equation printing one of them reads back to the
    derivation, and the same equation with it replaced by another no longer does."""
    d = derive(load_cell(cell))
    notation, names = probe_notation(tmp_path, d)
    md = render(build_document(d, notation), "md")
    read = Reader(names, d)
    derived = {eq.tag: eq.rhs for eq in d.forward} | {eq.tag: eq.expr for eq in d.backward}
    bodies = [(body, tag) for title in ("Forward pass, step t", "Backward equations of one step")
              for body, tag in display_equations(section(md, title)) if printed in body]
    assert bodies, f"no equation of {cell} prints {printed}"
    for body, tag in bodies:
        assert same(read.parse_equation(body)[2], derived[tag]), tag
        assert not same(read.parse_equation(body.replace(printed, changed, 1))[2], derived[tag]), tag


# -- formats and notations ----------------------------------------------------------------------

def test_tex_and_md_carry_the_same_equations():
    d = derive(load_cell("lstm"))
    doc = build_document(d, load_notation("default"))
    tex, md = render(doc, "tex"), render(doc, "md")
    for eq in display_equations(md):
        for line in eq[0].splitlines():
            assert line.strip().rstrip("\\").strip() in tex
    for eq in d.backward:
        assert rf"\tag{{{eq.tag}}}" in tex and rf"\tag{{{eq.tag}}}" in md


@pytest.mark.parametrize("notation, symbols", [
    ("default", [r"\bar{\delta} c^{\langle t \rangle}", r"o^{\langle t \rangle}"]),
    ("coursera", [r"\Gamma_u^{\langle t \rangle}", r"\mathrm{d}\bar{c}^{\langle t \rangle}",
                  r"\tilde{c}^{\langle t \rangle}", r"\hat{w}_f"]),
    ("cs231n", [r"dc_{\mathrm{next}}", r"a_{i,t}", r"W_{hf}"]),
    ("shg", [r"s(t-1)", r"\bar{\delta} s(t)", r"W_{fh}"]),
])
@pytest.mark.parametrize("fmt", ["tex", "md"])
def test_each_notation_renders_the_lstm(notation, symbols, fmt):
    text = document_text("lstm", fmt, notation)
    for symbol in symbols:
        assert symbol in text
    assert f"Notation: {notation}" in text


@pytest.mark.parametrize("cell", ["minimal_rnn", "book_lstm"])
def test_book_notation_renders_the_books_cells(cell):
    """The book counts its current step as t+1 (its s_{t+1} = f(u x_{t+1} + v s_t + b))."""
    text = document_text(cell, "md", "book")
    assert r"\mathit{Err}_{t+1}" in text and r"\mathit{Err}_{t}" not in text
    assert (r"s_{t}" if cell == "minimal_rnn" else r"\tilde{C}_{t+1}") in text


def test_missing_symbol_is_a_clear_error(tmp_path):
    source = Path(load_notation("coursera").path).read_text()
    path = tmp_path / "no_forget_gate.toml"
    path.write_text(source.replace("f = '\\Gamma_f'\n", ""))
    with pytest.raises(NotationError, match=r"no_forget_gate\.toml: .*cannot render cell 'lstm': "
                                            r"no symbol for f\b"):
        document_text("lstm", "md", path)


def test_cli_reports_a_notation_error(capsys):
    from cellgrad.cli import main
    assert main(["doc", "gru", "--notation", "coursera", "--format", "md"]) == 2
    err = capsys.readouterr().err
    assert "coursera" in err and "cannot render cell 'gru'" in err and "W_r" in err


def test_cli_writes_the_document(tmp_path):
    from cellgrad.cli import main
    out = tmp_path / "lstm.md"
    assert main(["doc", "lstm", "--format", "md", "--notation", "coursera", "--out", str(out)]) == 0
    assert out.read_text() == document_text("lstm", "md", "coursera")


def test_header_names_spec_hash_and_command_and_no_date():
    from derive import spec_hash
    text = document_text("gru", "tex")
    head = text.splitlines()[:3]
    spec = load_cell("gru")
    assert all(line.startswith("%") for line in head)
    assert "cellgrad doc gru --format tex" in head[0]
    assert spec_hash(spec.source_text)[:16] in head[1] and "derive/cells/gru.toml" in head[1]
    assert not re.search(r"20\d\d-\d\d-\d\d", text)
    assert document_text("gru", "tex") == text          # byte-identical when rebuilt


def test_spec_file_and_truncated_documents(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text((REPO_ROOT / "derive/cells/rnn.toml").read_text().replace('name = "rnn"',
                                                                               'name = "tiny"'))
    text = document_text(spec, "md")
    assert "`tiny`" in text and "tiny.toml" in text
    cut = document_text("lstm", "md", truncate=1)
    assert "This document is the 1-step truncation" in cut


# -- the committed documents --------------------------------------------------------------------

def test_committed_documents_are_fresh():
    outputs = builtin_outputs()
    for cell in builtin_cells():
        assert f"{DOCS_DIR}/{cell}.tex" in outputs and f"{DOCS_DIR}/{cell}.md" in outputs
    assert f"{DOCS_DIR}/lstm_coursera.md" in outputs
    stale = [path for path, text in outputs.items()
             if not (REPO_ROOT / path).is_file() or (REPO_ROOT / path).read_text() != text]
    assert not stale, f"stale documents, run `cellgrad regenerate`: {stale}"
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / DOCS_DIR).glob("*.*")
               if p.suffix in (".tex", ".md")}
    assert on_disk == set(outputs), f"unexpected files: {sorted(on_disk - set(outputs))}"


def _notation_cells():
    from derive.notation import builtin_notations
    for name in builtin_notations():
        for cell in load_notation(name).cells:
            yield name, cell


@pytest.mark.parametrize("notation, cell", list(_notation_cells()))
def test_every_notation_renders_the_cells_it_is_written_for(notation, cell):
    text = document_text(cell, "tex", notation)
    summary = text.split(r"\section{Backward equations of one step}", 1)[1].split(r"\section{", 1)[0]
    tags = re.findall(r"\\tag\{(B\d+)\}", summary)
    assert tags == [eq.tag for eq in derive(load_cell(cell)).backward]
    assert f"Notation: {notation}" in text
