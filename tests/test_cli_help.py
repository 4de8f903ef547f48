"""The command line explains itself: bare `cellgrad`, --version, every option's help, the
examples at the end of every command's --help (run, or parsed when slow), the README's command
and exit-code tables, one-line errors, and the mode of written files."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cellgrad import cli
from cellgrad.commands import Example

ROOT = Path(__file__).resolve().parents[1]
MODULES = list(cli._command_modules())


def cellgrad(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "cellgrad", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def help_text(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return out.getvalue()


def subparsers():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_bare_cellgrad_lists_every_command_on_one_line_each():
    result = cellgrad()
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    for module in MODULES:
        assert [l for l in lines if l.split()[:1] == [module.NAME]] == [f"  {module.NAME}".ljust(
            max(len(m.NAME) for m in MODULES) + 4) + module.HELP], module.NAME


def test_version_is_the_projects():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = cellgrad("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"cellgrad {version}")


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_has_help_with_its_default_and_choices(name):
    parser = subparsers()[name]
    text = help_text(name)
    for action in parser._actions:
        assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
        shown = parser._get_formatter()._get_help_string(action)
        if action.option_strings and action.default not in (None, False, [], "==SUPPRESS=="):
            assert "default" in shown, (name, action.option_strings, shown)
        for choice in action.choices or ():
            assert str(choice) in text, (name, action.option_strings, choice)


def test_every_command_help_ends_with_two_or_three_examples():
    for module in MODULES:
        text = help_text(module.NAME)
        tail = text[text.rindex("examples:"):].splitlines()[1:]
        assert 2 <= len(module.EXAMPLES) <= 3, module.NAME
        assert [l.strip() for l in tail if l.strip()] == [x for e in module.EXAMPLES
                                                          for x in (f"# {e.what}", e.line)]
        for example in module.EXAMPLES:
            assert shlex.split(example.line)[:2] == ["cellgrad", module.NAME], example


def _examples() -> list[Example]:
    """The top level's and every command's examples, generate's first: check's reads a module
    generate writes."""
    return [*cli.TOP_EXAMPLES,
            *(e for m in sorted(MODULES, key=lambda m: m.NAME != "generate") for e in m.EXAMPLES)]


def test_every_example_runs_and_the_slow_ones_parse(tmp_path, monkeypatch, capsys):
    """Run in this process (``cli.main``, as ``python -m cellgrad`` does), from a scratch folder."""
    readme = (ROOT / "README.md").read_text()
    (tmp_path / "my_cell.toml").write_text(re.search(r"```toml\n(.*?)```", readme, re.S).group(1))
    monkeypatch.chdir(tmp_path)
    for example in _examples():
        argv = shlex.split(example.line)[1:]
        if example.slow:
            args = cli.build_parser().parse_args(argv)
            assert args.command == argv[0]
            continue
        try:
            code = cli.main(argv)
        except SystemExit as done:  # --help
            code = done.code
        out, err = capsys.readouterr()
        assert code == example.exit, (example.line, err)
        assert "Traceback" not in err and out.strip(), example.line
    assert "\\Gamma_f" in (tmp_path / "lstm.md").read_text()  # the Coursera notation's gates
    assert (tmp_path / "kernels" / "lstm_numpy.py").is_file()


def _table(heading: str) -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def test_readme_command_table_matches_cellgrad_help():
    """One row per command says what its --help says; further rows may show a variant."""
    rows = _table("| command | what it does |")
    table: dict[str, list[str]] = {}
    for command, what in rows:
        table.setdefault(shlex.split(command.strip("`").replace("\\|", "|"))[1], []).append(what)
    assert set(table) == {m.NAME for m in MODULES}
    for module in MODULES:
        assert module.HELP in table[module.NAME], module.NAME
    top = help_text()
    for module in MODULES:
        assert module.NAME in top


def test_readme_exit_codes_match_the_cli():
    rows = _table("| code | meaning |")
    assert {int(code): text for code, text in rows} == cli.EXIT_CODES
    top = help_text()
    for code, text in cli.EXIT_CODES.items():
        assert " ".join(text.split()) in " ".join(top.split())


@pytest.mark.parametrize("argv, says", [
    (["derive", "no_such_cell"], "unknown cell 'no_such_cell'"),
    (["doc", "lstm", "--notation", "no_such_notation"], "unknown notation 'no_such_notation'"),
    (["check", "lstm", "--sizes", "Q=2"], "lstm has no size Q"),
    (["check", "missing_module.py"], "missing_module.py: no such generated module"),
    (["verify", "lstm", "--formula", "dc = ((("], "error"),
])
def test_bad_input_is_one_line_exit_2(argv, says):
    result = cellgrad(*argv)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.rstrip().splitlines()
    assert lines[0].startswith("cellgrad: error:") and says in lines[0], result.stderr
    # one line; an unreadable formula adds the line as typed and a caret line under the place
    assert len(lines) == 1 or len(lines) == 3 and set(lines[2].strip()) == {"^"}, result.stderr


def test_check_of_a_python_file_that_is_no_kernel_module_is_one_line_exit_2(tmp_path):
    (tmp_path / "plain.py").write_text("x = 1\n")
    result = cellgrad("check", str(tmp_path / "plain.py"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "not a kernel module written by cellgrad" in result.stderr


def test_an_internal_error_is_one_line_exit_4(monkeypatch, capsys):
    from cellgrad.commands import derive as command

    def broken(args):
        raise KeyError("simulated bug")
    monkeypatch.setattr(command, "run", broken)
    monkeypatch.delenv("CELLGRAD_TRACEBACK", raising=False)
    assert cli.main(["derive", "lstm"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error in `cellgrad derive`: KeyError" in err


def test_written_files_get_the_usual_mode_atomically(tmp_path):
    from codegen.outputs import write_atomic
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "new.py", "x = 1\n")
        assert stat.S_IMODE((tmp_path / "new.py").stat().st_mode) == 0o644
        kept = tmp_path / "private.py"
        kept.write_text("old\n")
        kept.chmod(0o600)
        write_atomic(kept, "new\n")
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and kept.read_text() == "new\n"
        result = cellgrad("generate", "rnn", "--out", str(tmp_path / "k"))
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE((tmp_path / "k" / "rnn_numpy.py").stat().st_mode) == 0o644
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k", "new.py", "private.py"]  # no temp left
