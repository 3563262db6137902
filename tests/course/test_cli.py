"""cli.py: the torch-free helpers every script (the grader included) shares."""
import argparse
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from course import cli


@pytest.mark.parametrize("parse,text,value", [(cli.positive_int, "3", 3), (cli.natural_int, "0", 0),
                                              (cli.positive_float, "1e-3", 1e-3), (cli.natural_float, "0", 0.0)])
def test_number_types_accept_what_they_name(parse, text, value):
    assert parse(text) == value


@pytest.mark.parametrize("parse,text,message", [
    (cli.positive_int, "0", "must be a positive whole number"),
    (cli.positive_int, "ten", "expected a positive whole number"),
    (cli.natural_int, "-1", "must be a whole number, 0 or more"),
    (cli.positive_float, "inf", "must be a positive number"),
    (cli.positive_float, "nan", "must be a positive number"),
    (cli.natural_float, "-0.5", "must be a number, 0 or more"),
])
def test_number_types_refuse_with_a_message(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_run_cli_turns_a_user_error_into_one_line_and_exit_code_2(capsys):
    def entry(argv):
        raise cli.UserError("the file is missing: give another one.")

    with pytest.raises(SystemExit) as exit_info:
        cli.run_cli(entry, [])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: the file is missing: give another one.\n"


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "results.csv"
    cli.write_atomically(path, "old\n")
    with pytest.raises(RuntimeError), cli.atomic_file(path) as f:
        f.write(b"half of the new")
        raise RuntimeError("crash")
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    assert os.stat(path).st_mode & 0o777 == 0o644  # readable by everyone, whatever the umask


@pytest.mark.parametrize("seconds,text", [(7.4, "7 s"), (166, "2 min 46 s"), (3725, "1 h 02 min")])
def test_format_seconds(seconds, text):
    assert cli.format_seconds(seconds) == text


def closed_stdout_run(code: str, buffered: bool = True) -> subprocess.CompletedProcess:
    """Run Python code whose stdout is a pipe nobody reads any more, as `... | head` leaves it."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=60, env=env if buffered else {**env, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(write_end)


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
def test_run_cli_is_quiet_when_the_reader_goes_away(buffered):
    result = closed_stdout_run("from course import cli; cli.run_cli(lambda argv: print('line\\n' * 100))", buffered)
    assert (result.returncode, result.stderr) == (1, "")


def test_without_run_cli_the_same_script_shows_a_traceback():  # what the test above guards against
    result = closed_stdout_run("print('line\\n' * 100)")
    assert "BrokenPipeError" in result.stderr


def test_run_cli_passes_argparse_exits_on():
    result = closed_stdout_run("import argparse\nfrom course import cli\n"
                               "cli.run_cli(lambda argv: argparse.ArgumentParser().parse_args(['--bad']))")
    assert result.returncode == 2 and "unrecognized arguments: --bad" in result.stderr
    assert "BrokenPipe" not in result.stderr


def test_display_path_is_relative_inside_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.display_path(tmp_path / "runs" / "a.pt") == "runs/a.pt"
    assert cli.display_path("runs/a.pt") == "runs/a.pt"
    assert cli.display_path(tmp_path) == "."
    assert cli.display_path("/elsewhere/a.pt") == "/elsewhere/a.pt"
    assert cli.display_path("../a.pt") == "../a.pt"  # outside: as given
