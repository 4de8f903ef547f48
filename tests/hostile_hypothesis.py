"""Random inputs for the hostile corpus, drawn by hypothesis inside the child process
(tests/hostile_runner.py): byte strings and text as spec files, random equations in a valid
spec, truncations of the built-in specs and of seed formulas, random formula text, notation files
cut short or mistyped, and documents cut out of pages or built from random pieces. Every example
gets the runner's CPU limit and must end cleanly: refused with a short message, or accepted.
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_corpus import (ALPHABET, HOLDS, HYPOTHESIS_EXAMPLES, NOTATIONS, SEED_FORMULAS,
                            builtin_spec_texts, document_texts, notation_texts, spec)

EQUATION_ALPHABET = "hxWU_@+-*/()., =0123456789eabcdtanhsigmoid;\\#\n\t'\"[]{}:<>!~%&|^`$?"


def _truncations(texts: list[str]):
    return st.sampled_from(texts).flatmap(lambda t: st.integers(0, len(t)).map(lambda n: t[:n]))


def _edits(texts: list[str], alphabet: str, max_size: int = 40):
    """A text with a random piece replaced by random characters: a user's typo, anywhere."""
    def edit(draw_args):
        text, start, length, new = draw_args
        start = min(start, len(text))
        return text[:start] + new + text[start + length:]
    return st.tuples(st.sampled_from(texts), st.integers(0, 4000), st.integers(0, 20),
                     st.text(alphabet, max_size=max_size)).map(edit)


def _windows(texts: list[str], chars: int = 600):
    """A piece of at most ``chars`` characters of a document, starting near one of its formulas
    and cut anywhere: a page cut off at both ends (an equation environment never closed)."""
    starts = [(t, k) for t in texts for k in range(len(t)) if t[k] == "$" or t.startswith("\\begin", k)]
    return st.tuples(st.sampled_from(starts), st.integers(-20, 20), st.integers(60, chars)).map(
        lambda w: w[0][0][max(0, w[0][1] + w[1]):max(0, w[0][1] + w[1]) + w[2]])


def _documents():
    """Documents built from pieces: prose, inline, display and aligned math around the seed
    formulas, random formula text, and stray delimiters."""
    formula = st.one_of(st.sampled_from(SEED_FORMULAS), st.text(ALPHABET, max_size=60))
    piece = st.one_of(
        st.text(string.ascii_letters + " .,\n", max_size=40),
        formula.map(lambda f: f"${f}$"),
        formula.map(lambda f: f"\n$$\n{f}\n$$\n"),
        st.lists(formula, min_size=1, max_size=3).map(
            lambda fs: "\\begin{align}\n" + " \\\\\n".join(f.replace("=", "&=", 1) for f in fs)
            + "\n\\end{align}\n"),
        st.sampled_from(["$", "$$", "\\begin{align}", "\\end{align}", "\\[", "\\]", "`", "```"]),
    )
    return st.lists(piece, max_size=8).map("".join)


#: the notations a document can be read with: by name, the seed ones by path
DOCUMENT_NOTATIONS = [None, "coursera", "cs231n", *(str(p) for p in NOTATIONS if "seed_" in p.name)]


def strategies():
    specs = builtin_spec_texts()
    return {
        "spec_bytes": ("spec", st.binary(max_size=3000)),
        "spec_text": ("spec", st.text(EQUATION_ALPHABET, max_size=300).map(
            lambda e: spec(f"h = tanh(W @ x + U @ h_prev)\n{e}"))),
        "spec_truncations": ("spec", _truncations(specs)),
        "formula_text": ("formula", st.text(ALPHABET, max_size=400).map(
            lambda t: ("lstm", t, None, None))),
        "formula_truncations": ("formula", _truncations(SEED_FORMULAS).map(
            lambda t: ("lstm", t, None, None))),
        "notation_truncations": ("notation", st.tuples(
            st.sampled_from(["lstm", "gru", "rnn"]), _truncations(notation_texts()),
            st.sampled_from(SEED_FORMULAS))),
        "notation_edits": ("notation", st.tuples(
            st.sampled_from(["lstm", "gru", "rnn"]), _edits(notation_texts(), ALPHABET + "='[]{}#\\n"),
            st.just(HOLDS))),
        "document_windows": ("document", st.tuples(_windows(document_texts()),
                                                   st.sampled_from(DOCUMENT_NOTATIONS))),
        "document_text": ("document", st.tuples(_documents(), st.sampled_from(DOCUMENT_NOTATIONS))),
    }


def run_hypothesis(kind: str, runner) -> None:
    entry, strategy = strategies()[kind]

    @settings(max_examples=HYPOTHESIS_EXAMPLES[kind], derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def each(payload):
        outcome, message = runner.outcome(entry, payload)
        assert outcome in ("refused", "accepted"), f"{outcome}: {message}"
        if outcome == "refused":
            assert message and "\n" not in message and len(message) <= 500, message

    each()
