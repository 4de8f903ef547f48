"""Verify on documents the project did not start from: derivations written for this test in
the styles BPTT texts use (d2l.ai's column vectors and prod(., .) chains, min-char-rnn's
dhnext/dhraw with +=, a GRU blog's z/r/h-tilde, Goodfellow et al.'s ∇_{h^(t)} L and diag(v)),
each with a cell spec or a built-in cell and a notation file written only from docs/verify.md.
The verdicts a careful reader gives are in tests/fixtures/verify_documents/expected.toml; the
verifier never reads them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from derive.verify.document import verify_document

FOLDER = Path(__file__).resolve().parent / "fixtures" / "verify_documents"
EXPECTED = tomllib.loads((FOLDER / "expected.toml").read_text("utf-8"))
#: the least share of each document's formulas judged as a careful reader does (measured)
FLOOR = {"d2l.md": 0.9, "char_rnn.md": 0.9, "gru.md": 0.9, "scalar_rnn.md": 0.9,
         "torch_lstm.md": 0.9, "goodfellow.md": 0.85}


def judged(document: str):
    """(right, formulas, wrong verdicts, misses) for one document."""
    setup = EXPECTED["documents"][document]
    cell = setup["cell"]
    cell = str(FOLDER / cell) if cell.endswith(".toml") else cell
    rows = verify_document((FOLDER / document).read_text("utf-8"), cells=[cell],
                           notation=str(FOLDER / setup["notation"]))
    by_line = {r.formula.line: r for r in rows}
    right, wrong, missed = 0, [], []
    entries = [e for e in EXPECTED["formula"] if e["document"] == document]
    for e in entries:
        row = by_line.get(e["line"])
        verdict = row.verdict if row is not None else "not found"
        kinds = [d.kind for d in row.result.diagnosis] if row is not None and row.result else []
        if verdict == e["expect"] and (not e.get("diagnosis") or e["diagnosis"] in kinds):
            right += 1
        elif verdict in ("holds", "does not hold") and verdict != e["expect"]:
            wrong.append((e["line"], verdict, row.detail))
        else:
            missed.append((e["line"], verdict, row.detail if row is not None else "", kinds))
    return right, len(entries), wrong, missed


@pytest.mark.parametrize("document", sorted(EXPECTED["documents"]))
def test_own_document_is_judged_as_a_careful_reader_does(document):
    right, total, wrong, missed = judged(document)
    print(f"{document}: {right}/{total} judged right; misses: {missed}")
    assert not wrong, f"wrong verdicts: {wrong}"
    assert right / total >= FLOOR[document], missed


def test_every_formula_of_the_documents_has_an_expectation():
    for document in EXPECTED["documents"]:
        lines = [n for n, line in enumerate((FOLDER / document).read_text("utf-8").splitlines(), 1)
                 if line.strip()]
        expected = sorted(e["line"] for e in EXPECTED["formula"] if e["document"] == document)
        assert lines == expected, document


WRONG = [e for e in EXPECTED["formula"] if e["expect"] == "does not hold"]


@pytest.mark.parametrize("entry", WRONG, ids=[f"{e['document']}-L{e['line']}" for e in WRONG])
def test_the_correct_formula_printed_in_the_documents_notation_reads_back(entry):
    """For a formula that does not hold, the correct right side verify prints, in the document's
    own notation, holds with the same left side."""
    from derive.verify import verify
    setup = EXPECTED["documents"][entry["document"]]
    cell = str(FOLDER / setup["cell"]) if setup["cell"].endswith(".toml") else setup["cell"]
    notation = str(FOLDER / setup["notation"])
    text = (FOLDER / entry["document"]).read_text("utf-8").splitlines()[entry["line"] - 1]
    text = text.strip().strip("$").replace(r"\mathrel{+}=", "=")
    v = verify(cell, text, notation=notation)
    assert v.verdict == "does not hold" and v.correct, v.detail
    left = text[:text.index("=")]
    again = verify(cell, f"{left} = {v.correct}", notation=notation)
    assert again.verdict == "holds", (v.correct, again.detail)
