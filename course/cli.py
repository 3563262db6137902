"""Helpers every script shares that need no torch: user errors, the CLI runner, paths as printed,
argparse number types, atomic writes and time formatting.

The grader imports this module too, so it must stay free of torch and numpy.
"""
import argparse
import contextlib
import math
import os
import sys
import tempfile
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: printed as one clear message, no traceback."""


def run_cli(entry, argv=None, finish_when_stdout_closes: bool = False) -> None:
    """Run a command-line entry point: a UserError becomes one clear line and exit code 2; a closed stdout, silence.

    A closed stdout (`... | head`) ends the command, unless finish_when_stdout_closes: then it runs to its end
    without printing (a training run that saves its weights). An integer return value becomes the exit code.
    """
    stdout = sys.stdout
    if finish_when_stdout_closes:
        sys.stdout = StdoutThatOutlivesItsReader(stdout)
    try:
        try:
            code = _run(entry, argv)
        finally:  # also on argparse's exit (--help): buffered output meets a closed pipe here, not at exit
            sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (`python main.py | head`): Python's documented recipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the flush at exit stays quiet
        code = 1
    finally:
        sys.stdout = stdout
    if isinstance(code, int):
        sys.exit(code)


class StdoutThatOutlivesItsReader:
    """sys.stdout that, once its reader has gone, sends the rest to /dev/null instead of raising BrokenPipeError."""

    def __init__(self, stream):
        self.stream, self.reader_has_gone = stream, False

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self.reader_gone()
            return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            self.reader_gone()

    def reader_gone(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())
        self.reader_has_gone = True

    def __getattr__(self, name):  # isatty, fileno, encoding...: the stream's own
        return getattr(self.stream, name)


def say_even_if_stdout_closed(text: str) -> None:
    """Print a line the user must see (where the weights went): to stderr too when stdout's reader has gone."""
    print(text, flush=True)
    if getattr(sys.stdout, "reader_has_gone", False):
        print(text, file=sys.stderr, flush=True)


def _run(entry, argv) -> int | None:
    """entry(argv)'s exit code, a UserError or Ctrl-C turned into one."""
    try:
        return entry(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def display_path(path: str | Path) -> str:
    """A path as the scripts print it: relative when it lies inside the current folder, else as given."""
    absolute = Path(os.path.abspath(path))  # lexical, like the path the user typed: no symlinks resolved
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ------------------------------------------------------- command-line numbers

def _number(text: str, kind, lowest, words: str):
    """Parse text as a finite `kind`, >= lowest (> 0 when lowest is None); argparse shows the message."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {words}, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
    if (lowest is None and not value > 0) or (lowest is not None and value < lowest):
        raise argparse.ArgumentTypeError(f"must be {words}, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number above zero."""
    return _number(text, int, None, "a positive whole number")


def natural_int(text: str) -> int:
    """argparse type: a whole number, zero or more."""
    return _number(text, int, 0, "a whole number, 0 or more")


def positive_float(text: str) -> float:
    """argparse type: a finite number above zero."""
    return _number(text, float, None, "a positive number")


def natural_float(text: str) -> float:
    """argparse type: a finite number, zero or more."""
    return _number(text, float, 0, "a number, 0 or more")


# -------------------------------------------------------------- atomic writes

@contextlib.contextmanager
def atomic_file(path: str | Path):
    """Open `path` for writing (binary) through a temporary file that replaces it only when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a result file is for everyone to read
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left there if something failed


def check_writable(path: str | Path, flag: str) -> None:
    """Make sure a file can be written at `path` (its folder made if missing) before hours of work go into it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot write there ({error.strerror or error}); choose another "
                        f"{flag}.") from None
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'finetuned.pt'}.")


def write_atomically(path: str | Path, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to `path` atomically: readers see the old file or the new one, never half of one."""
    with atomic_file(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def user_cache(*parts: str) -> Path:
    """A path in the project's part of the user's cache folder ($XDG_CACHE_HOME, else ~/.cache): kept between
    runs, safe to delete."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "resnet50-cifar10", *parts)


# ----------------------------------------------------------------------- time

def format_seconds(seconds: float) -> str:
    """3725 -> '1 h 02 min', 166 -> '2 min 46 s', 7.4 -> '7 s'."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
