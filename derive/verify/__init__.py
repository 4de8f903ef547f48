"""Verify hand-written BPTT gradient formulas against the derivation of their cell.

    >>> from derive.verify import verify
    >>> verify("lstm", r"\\mathrm{d}c = \\mathrm{d}c_{next} + \\mathrm{d}h\\, o (1 - \\tanh^2 c)").verdict
    'holds'

A formula is read strictly (``parse``, after ``normalize_latex``), checked per step or for the
whole sequence (``check``), and, when it does not hold, explained by the usual slips
(``diagnose``). See docs/verify.md.
"""

from __future__ import annotations

from .check import Verdict, verify
from .diagnose import Diagnosis
from .errors import VerifyError
from .vocabulary import known_readings

__all__ = ["Diagnosis", "Verdict", "VerifyError", "known_readings", "verify"]
