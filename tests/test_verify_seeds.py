"""Every gradient formula of the seed documents, verified; the verdict must be the one a careful
reader gives (tests/fixtures/seed_formulas.toml). The verifier never sees the expectations."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from derive.verify import verify

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "seed_formulas.toml"
SEEDS = Path(os.environ.get("CELLGRAD_SEEDS") or ROOT.parent / "shared" / "seeds")
ENTRIES = tomllib.loads(FIXTURES.read_text(encoding="utf-8"))["formula"]
VERDICTS = {"holds", "does not hold", "unreadable"}


def notation_of(entry) -> str:
    """A built-in notation name, or a notation file relative to the repository root."""
    name = entry["notation"]
    return str(ROOT / name) if name.endswith(".toml") else name


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_seed_formula_verdict(entry):
    v = verify(entry["cell"], entry["latex"], quantity=entry.get("quantity") or None,
               notation=notation_of(entry))
    assert v.verdict == entry["expect"], (v.detail, v.diagnosis_text)
    if entry.get("diagnosis"):
        assert entry["diagnosis"] in [d.kind for d in v.diagnosis], v.diagnosis_text
    if v.verdict == "unreadable":
        assert v.detail, "an unreadable verdict says why and where"


def test_fixtures_are_well_formed():
    ids = [e["id"] for e in ENTRIES]
    assert len(ids) == len(set(ids))
    for e in ENTRIES:
        assert e["expect"] in VERDICTS, e["id"]
        assert {"source", "line", "quote", "latex", "cell", "notation"} <= set(e), e["id"]
        if e["expect"] == "unreadable" or e.get("repaired"):
            assert e.get("note"), f"{e['id']}: say why it is unreadable or how it was repaired"
    sources = Counter(e["source"] for e in ENTRIES)
    assert len(sources) == 5 and min(sources.values()) >= 5


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}")
def test_quotes_are_the_documents_own_text():
    """Each quote is found in its document near the line given (formulas as written)."""
    for e in ENTRIES:
        text = (SEEDS / e["source"]).read_text(encoding="utf-8").splitlines()
        first, _, last = str(e.get("lines", e["line"])).partition("-")
        window = "\n".join(text[max(0, int(first) - 2): int(last or first) + 1])
        for piece in re.split(r"\s*(?:…|\$\$ … \$\$)\s*", e["quote"].strip()):
            piece = piece.strip().strip("$").strip()
            assert piece[:60] in window, (e["id"], piece[:60])


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"seed documents not found at {SEEDS}")
def test_every_seed_document_has_fixtures():
    assert {p.name for p in SEEDS.glob("*.txt")} == {e["source"] for e in ENTRIES}


def test_seeds_command_prints_a_table_per_document():
    result = subprocess.run([sys.executable, "-m", "cellgrad", "verify", "--seeds"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("### ") == 5
    assert out.count("\n| ") - 5 == len(ENTRIES)            # header rows excluded
    assert re.search(rf"^{len(ENTRIES)} formulas: ", out, re.M)


def test_docs_show_the_current_seed_table():
    """docs/verify.md carries the table `cellgrad verify --seeds` prints, unedited."""
    doc = (ROOT / "docs" / "verify.md").read_text(encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "cellgrad", "verify", "--seeds"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() in doc, "regenerate the table: cellgrad verify --seeds"


@pytest.mark.parametrize("builtin", ["coursera", "cs231n", "shg", "book"])
def test_a_builtin_notation_passed_as_a_file_reads_exactly_as_by_name(builtin):
    """Built-in notations are plain files: the file path and the name give the same verdicts."""
    from derive.notation import notation_path
    path = str(notation_path(builtin))
    family = {"coursera": "000", "cs231n": "002", "shg": "004", "book": "001"}[builtin]
    entries = [e for e in ENTRIES if e["id"].startswith(family)][:8]
    for e in entries:
        by_name = verify(e["cell"], e["latex"], quantity=e.get("quantity") or None, notation=builtin)
        by_file = verify(e["cell"], e["latex"], quantity=e.get("quantity") or None, notation=path)
        assert (by_name.verdict, by_name.claim, by_name.correct) == \
            (by_file.verdict, by_file.claim, by_file.correct), e["id"]
