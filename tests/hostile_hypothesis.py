"""Random inputs for the hostile corpus, drawn by hypothesis inside the child process
(tests/hostile_runner.py): byte strings and text as spec files, random equations in a valid
spec, truncations of the built-in specs and of seed formulas, random formula text. Every example
gets the runner's CPU limit and must end cleanly: refused with a short message, or accepted.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostile_corpus import ALPHABET, HYPOTHESIS_EXAMPLES, SEED_FORMULAS, builtin_spec_texts, spec

EQUATION_ALPHABET = "hxWU_@+-*/()., =0123456789eabcdtanhsigmoid;\\#\n\t'\"[]{}:<>!~%&|^`$?"


def _truncations(texts: list[str]):
    return st.sampled_from(texts).flatmap(lambda t: st.integers(0, len(t)).map(lambda n: t[:n]))


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
