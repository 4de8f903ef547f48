"""Rewrite the LaTeX people write into the small, regular form ``parse`` reads strictly.

Each rewrite is one entry below, with the form it accepts. What is not rewritten here and not
understood by the parser is an error there, never silently dropped. The rewrites only change
*spelling*, never meaning:

* ``\\_`` (an escaped underscore in a name: ``a_{m\\_1}``) -> ``_``;
* math delimiters ``$``/``$$``, full-width CJK punctuation (（）， ＝ ＋ －) -> ASCII;
* ``\\left``/``\\right``/``\\big`` sizing, spacing (``\\,``, ``\\!``, ``\\quad``, ``~``), ``\\therefore``,
  ``\\bullet``, ``\\displaystyle``, fonts (``\\mathbf{c}``, ``\\mathsf``, ``\\boldsymbol``,
  ``\\mathrm{X}``) -> removed, keeping their content;
* ``\\mathrm{d}X`` (the adjoint ``dX``) -> ``\\diff X``;
* time superscripts ``^{\\langle t-1\\rangle}``, ``^{<t>}``, ``^{\\lt t \\gt}`` -> ``@{t-1}``; Goodfellow
  et al.'s ``^{(t-1)}`` too, with a transpose inside it (``h^{(t-1)T}``, ``^{(t)\\top}``) ->
  ``@{t-1}^{T}``, and ``^{(\\tau)}`` (the book's last step tau) -> ``@{T}``;
* ``\\operatorname{diag}``, ``\\text{diag}``, ``\\mathrm{diag}`` -> ``diag`` (the parser reads ``diag(v)``
  as the diagonal matrix inside a product chain);
* ``\\begin{array}{c} a \\\\ x \\end{array}`` (a stacked column) -> ``[a, x]``;
* ``\\begin{aligned}``, ``&`` and ``\\\\`` of a derivation chain -> one line ``A = B = C``;
* comments ``\\# eq 3`` and prose ``\\quad \\text{as ...}`` -> removed; ``\\text{prev}`` -> ``prev``;
* ``\\overset{(N,H)}{X}`` shape notes and ``\\overline{X}`` -> ``X`` (``\\underline{X}`` is kept:
  in PDF extractions it is the numerator of a fraction whose denominator was lost, and the
  parser says so);
* ``\\mid``, ``\\vert``, ``\\lvert``, ``\\rvert`` -> ``|`` (``[U | W]``, ``|x|``);
* ``\\times``, ``\\ast``, ``\\star`` -> ``*``; ``\\circ`` -> ``\\odot``; ``^{\\prime}`` -> ``'``;
* a function the op table reads written without a backslash (``tanh``) -> ``\\tanh``;
* a time index whose ``)`` is missing before a closing brace, ``\\frac{dL(t)}{di(t}``, is
  closed (``(t}`` can mean nothing else);
* ``\\mathrel{+}=``, ``\\mathrel{+=}``, ``+=`` (code's accumulation, ``dW += da x^T``) -> ``\\pluseq``;
* optionally (PDF extractions that turned ``_`` into ``-``, seed 002): ``c-t`` -> ``c_t``.
"""

from __future__ import annotations

import re

from derive import ops

FULL_WIDTH = str.maketrans({"（": "(", "）": ")", "，": ",", "＝": "=", "＋": "+", "－": "-",
                            "［": "[", "］": "]", "：": ":", "；": ";", "　": " ", "−": "-",
                            "⋅": r"\cdot ", "×": r"\times ", "⊙": r"\odot ", "⊗": r"\otimes ",
                            "σ": r"\sigma ", "Γ": r"\Gamma ", "∂": r"\partial ", "Σ": r"\sum "})

SIZING = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|Biggl|Biggr|big|Big|bigg|Bigg)"
                    r"(?![A-Za-z])\s*\.?")
SPACING = re.compile(r"\\[,;:!> ]|\\(?:quad|qquad|displaystyle|textstyle|therefore|because|bullet"
                     r"|nonumber|notag)(?![A-Za-z])|~")
FONT = re.compile(r"\\(?:mathbf|mathsf|mathit|mathnormal|boldsymbol|bm|mathrm|textbf|textit|"
                  r"mathbb|mathcal|textrm|texttt|mathtt)\s*\{([^{}]*)\}")
OLD_FONT = re.compile(r"\{\\(?:rm|bf|it|sf)\s+([^{}]*)\}")
ARRAY = re.compile(r"\\begin\{(?:array|pmatrix|bmatrix|matrix)\}\s*(?:\{[^{}]*\})?(.*?)"
                   r"\\end\{(?:array|pmatrix|bmatrix|matrix)\}", re.S)
TIME_SUP = re.compile(r"\^\s*\{\s*(?:\\langle|<|\\lt)\s*([^{}<>\\]*?)\s*(?:\\rangle|>|\\gt)\s*\}")
PAREN_TIME_SUP = re.compile(r"\^\s*\{\s*\(\s*([tT]|\\tau)\s*((?:[+-]\s*\d+\s*)?)\)\s*"
                            r"(T|\\top|\\intercal)?\s*\}")
BARE_TIME_SUP = re.compile(r"\^\s*(?:\\langle|<|\\lt)\s*([A-Za-z0-9+\- ]*?)\s*(?:\\rangle|>|\\gt)")
COMMENT = re.compile(r"\\#.*?(?=\\\\|$)", re.S)
PROSE = re.compile(r"\\quad\s*\\text\s*\{.*?(?=\\\\|$)", re.S)
TEXT = re.compile(r"\\(?:text|mbox|textnormal)\s*\{([^{}]*)\}")
OVERSET = re.compile(r"\\(?:overset|underset|stackrel)\s*\{[^{}]*\}\s*")
UNDERLINE = re.compile(r"\\overline\s*\{([^{}]*)\}")
WIDE = re.compile(r"\\wide(tilde|hat)\b")
PLUS_EQUALS = re.compile(r"\\mathrel\s*\{\s*\+\s*\}\s*(?:\\!\s*)*\{?\s*=\s*\}?|\\mathrel\s*\{\s*\+\s*=\s*\}"
                         r"|\+\s*=")


def _bare_functions() -> re.Pattern:
    """Function names written without a backslash: every LaTeX name the op table reads."""
    names = sorted((n for n in ops.latex_reads() if n.isalpha()), key=lambda n: (-len(n), n))
    return re.compile(r"(?<![\\A-Za-z])(" + "|".join(names) + r")(?![A-Za-z])")


UNCLOSED_TIME = re.compile(r"\((\s*[tT]\s*(?:[+-]\s*\d+)?\s*)\}")
HYPHEN_NAME = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")


def _paren_time(m: re.Match) -> str:
    """``^{(t-1)T}`` -> ``@{t-1}^{T}``: the step, then the transpose written inside the braces."""
    step = "T" if m.group(1) == r"\tau" else m.group(1)
    return "@{" + step + m.group(2).replace(" ", "") + "}" + ("^{T}" if m.group(3) else "")


def normalize_latex(text: str, *, hyphen_subscripts: bool = False) -> str:
    """The formula in the form ``derive.verify.parse`` reads (see the module docstring)."""
    s = text.translate(FULL_WIDTH)
    s = s.replace("$", " ").replace(r"\_", "_")
    s = COMMENT.sub(" ", s)
    s = PLUS_EQUALS.sub(r" \\pluseq ", s)
    s = PROSE.sub(" ", s)
    s = re.sub(r"\\mathrm\s*\{\s*d\s*\}|\{\\rm\s+d\s*\}|\\operatorname\s*\{\s*d\s*\}", r"\\diff ", s)
    s = re.sub(r"\\diff\s*\{\s*([^{}]*?)\s*\}", r"\\diff \1", s)     # \mathrm{d}{a}
    s = re.sub(r"\\operatorname\s*\{\s*diag\s*\}", "diag ", s)
    s = re.sub(r"\\operatorname\s*\{([A-Za-z]+)\}", lambda m: "\\" + m.group(1) + " ", s)
    s = SIZING.sub("", s)
    s = TEXT.sub(lambda m: m.group(1).strip(), s)
    for _ in range(3):                       # nested fonts: \mathbf{\mathsf{c}}
        s = FONT.sub(lambda m: m.group(1), s)
        s = OLD_FONT.sub(lambda m: m.group(1), s)
    s = OVERSET.sub("", s)
    s = UNDERLINE.sub(lambda m: m.group(1), s)
    s = WIDE.sub(lambda m: "\\" + m.group(1), s)
    s = ARRAY.sub(lambda m: "[" + ", ".join(p.strip() for p in m.group(1).split(r"\\") if p.strip())
                  + "]", s)
    s = re.sub(r"\\(?:begin|end)\{(?:aligned|align\*?|split|gathered|equation\*?)\}", " ", s)
    s = s.replace(r"\\", " ").replace("&", " ")
    s = SPACING.sub(" ", s)
    s = TIME_SUP.sub(lambda m: "@{" + m.group(1).replace(" ", "") + "}", s)
    s = PAREN_TIME_SUP.sub(_paren_time, s)
    s = BARE_TIME_SUP.sub(lambda m: "@{" + m.group(1).replace(" ", "") + "}", s)
    s = re.sub(r"\\(?:times|ast|star)(?![A-Za-z])", "*", s)
    s = re.sub(r"\\circ(?![A-Za-z])", r"\\odot", s)
    s = re.sub(r"\\(?:mid|vert|lvert|rvert)(?![A-Za-z])", "|", s)
    s = re.sub(r"\^\s*\{\s*\\prime\s*\}|\^\s*\\prime(?![A-Za-z])", "'", s)
    s = re.sub(r"\\lt(?![A-Za-z])", "<", s)
    s = re.sub(r"\\gt(?![A-Za-z])", ">", s)
    s = re.sub(r"\\operatorname", "", s)
    s = _bare_functions().sub(lambda m: "\\" + m.group(1), s)
    if hyphen_subscripts:
        s = HYPHEN_NAME.sub("_", s)
    s = UNCLOSED_TIME.sub(r"(\1)}", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"[,.;]\s*$", "", s).strip()
    return s
