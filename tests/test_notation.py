"""Notations: loading, validation errors that say where, and the names a derivation prints."""

from __future__ import annotations

import sympy as sp
import pytest

from derive import builtin_cells, derive, load_cell
from derive.notation import NotationError, builtin_notations, load_notation, parse_notation


@pytest.fixture(scope="module")
def lstm():
    return derive(load_cell("lstm"))


def test_builtin_notations_are_the_five_of_the_issue():
    assert set(builtin_notations()) >= {"default", "coursera", "cs231n", "shg", "book"}


@pytest.mark.parametrize("cell", builtin_cells())
def test_default_notation_renders_every_builtin_cell(cell):
    d = derive(load_cell(cell))
    names = load_notation("default").latex_names(d)
    used = set()
    for eq in d.backward:
        used |= eq.expr.free_symbols | {sp.Symbol(eq.target)}
    for eq in d.forward:
        used |= eq.rhs.free_symbols | {sp.Symbol(eq.lhs)}
    assert {s for s in used if s.name in d.quantities or s.name.startswith("d")} <= set(names)
    assert len(set(names.values())) == len(names), "two names print alike"


@pytest.mark.parametrize("notation", ["default", "coursera", "cs231n", "shg"])
def test_each_lstm_notation_names_every_lstm_quantity(notation, lstm):
    table = load_notation(notation).latex_table(lstm)
    for name in list(lstm.quantities) + ["dh_out", "dh_next", "dc_next", "dc_prev", "dW_f"]:
        assert name in table


def test_book_notation_renders_the_books_cells():
    book = load_notation("book")
    rnn = book.latex_table(derive(load_cell("minimal_rnn")))
    # the book's current step is t+1: s_{t+1} = f(u x_{t+1} + v s_t + b_f)
    assert (rnn["s"], rnn["s_prev"], rnn["u"], rnn["ds_next"]) == \
        ("s_{t+1}", "s_{t}", "u", r"\bar{\delta} s_{t+1}")
    lstm = book.latex_table(derive(load_cell("book_lstm")))
    assert (lstm["Ct"], lstm["C_prev"], lstm["a_Ct"]) == (r"\tilde{C}_{t+1}", "C_{t}", "z_{C,t+1}")


def test_coursera_symbols_follow_seed_000(lstm):
    t = load_notation("coursera").latex_table(lstm)
    assert t["h"] == r"a^{\langle t \rangle}"
    assert t["i"] == r"\Gamma_u^{\langle t \rangle}"
    assert t["g"] == r"\tilde{c}^{\langle t \rangle}"
    assert t["c_prev"] == r"c^{\langle t-1 \rangle}"
    assert t["dc"] == r"\mathrm{d}c^{\langle t \rangle}"
    assert t["dc_next"] == r"\mathrm{d}\bar{c}^{\langle t \rangle}"      # from the next cell
    assert t["dh_out"] == r"\mathrm{d}\hat{a}^{\langle t \rangle}"       # from this step's loss
    assert t["dh_prev"] == r"\mathrm{d}\bar{a}^{\langle t-1 \rangle}"    # what step t-1 receives
    assert t["W_f"] == r"\tilde{w}_f" and t["dW_f"] == r"\mathrm{d}\tilde{w}_f"


def test_time_styles(lstm):
    assert load_notation("shg").latex_table(lstm)["c_prev"] == "s(t-1)"
    cs = load_notation("cs231n").latex_table(lstm)
    assert cs["i"] == "i_{t}" and cs["a_i"] == "a_{i,t}"
    assert cs["h_prev"] == r"h_{\mathrm{prev}}"     # written out in the file, used as is


def test_sympy_latex_uses_the_table(lstm):
    names = load_notation("coursera").latex_names(lstm)
    text = sp.latex(lstm.backward_eq("dc").expr, symbol_names=names)
    assert r"\mathrm{d}\bar{c}^{\langle t \rangle}" in text and r"\Gamma_o^{\langle t \rangle}" in text


def test_reverse_inverts_base_and_printed_names(lstm):
    n = load_notation("coursera")
    assert n.reverse()[r"\Gamma_f"] == "f"
    full = n.reverse(lstm)
    assert full[r"c^{\langle t-1 \rangle}"] == "c_prev"
    assert full[r"\mathrm{d}\bar{a}^{\langle t \rangle}"] == "dh_next"


def test_missing_symbol_is_a_clear_error(tmp_path, lstm):
    text = open(load_notation("coursera").path, encoding="utf-8").read()
    path = tmp_path / "partial.toml"
    path.write_text(text.replace("o = '\\Gamma_o'\n", ""))
    with pytest.raises(NotationError) as err:
        load_notation(path).latex_names(lstm)
    assert str(path) in str(err.value) and "no symbol for o" in str(err.value)
    with pytest.raises(NotationError, match="no symbol for 'o'"):
        load_notation(path).symbol("o")


def test_notation_for_another_family_says_what_is_missing():
    with pytest.raises(NotationError, match=r"cannot render cell 'gru'.*W_r"):
        load_notation("coursera").latex_names(derive(load_cell("gru")))


def test_unknown_notation():
    with pytest.raises(NotationError, match="unknown notation 'klingon'.*coursera"):
        load_notation("klingon")


HEADER = '[notation]\nname = "mine"\n'


def test_bad_toml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(HEADER + "[symbols]\nh = = 'a'\nc = 'c'\n")
    with pytest.raises(NotationError, match=r"bad\.toml:4: not valid TOML"):
        load_notation(path)
    path.write_text(HEADER + "[symbols]\nh = 'a\n")
    with pytest.raises(NotationError, match=r"bad\.toml:4: not valid TOML"):
        load_notation(path)


@pytest.mark.parametrize("symbol, problem", [
    (r"'\Gamma_{u'", "unbalanced braces"),
    ("'$a$'", "without delimiters"),
    ("'a_'", "nothing after it"),
    ("''", "empty"),
    ("'a\u00e9'", "characters"),
    (r"'a\\'", "backslash"),
])
def test_symbol_that_is_not_latex_names_its_line(symbol, problem):
    text = HEADER + "[symbols]\nx = 'x'\nh = " + symbol + "\n"
    with pytest.raises(NotationError, match=rf"mine\.toml:5: symbol of 'h' .*{problem}"):
        parse_notation(text, path="mine.toml")


def test_clash_names_both_and_the_line():
    text = HEADER + "[symbols]\nh = 'a_{t}'\nc = 'c'\nx = ' a_t '\n"
    with pytest.raises(NotationError, match=r"mine\.toml:6: symbol clash: 'x' and 'h'"):
        parse_notation(text, path="mine.toml")


def test_bad_time_style_and_template():
    with pytest.raises(NotationError, match="time = 'superscript'"):
        parse_notation(HEADER + "time = 'superscript'\n", path="m.toml")
    with pytest.raises(NotationError, match=r"m\.toml:3: .*adjoint .*placeholder"):
        parse_notation(HEADER + "adjoint = '\\delta'\n", path="m.toml")
