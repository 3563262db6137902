"""The command line of grade.py: skeleton, check, handout, autograder, gradescope."""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import textwrap
import time
from pathlib import Path

from course.cli import UserError, natural_int, positive_float, positive_int, write_atomically
from grading import LAYER_TESTS, REFERENCE
from grading.compare import Reference
from grading.markers import make_skeleton

LIMITS_HELP = {
    "timeout": "wall-clock limit per submission, for code that sleeps or blocks (default: 120, twice the CPU "
               "limit: an honest submission takes about 5 s)",
    "cpu": "CPU seconds per submission, all its processes together; a loaded machine slows grading down "
           "but fails nobody (default: 60; an honest submission needs about 3)",
    "memory": "address-space limit of each process; torch alone needs about 3.4 (default: 4)",
    "sandbox": "auto: bubblewrap where it works, else process limits with a loud warning; bwrap: stop if "
               "bubblewrap cannot run; process: process limits only (default: auto)",
    "seed": "the seed of the probes' weights and inputs, the same for every submission, so that grades are "
            "reproducible (default: a new random seed per submission, so that no answer can be made ahead)",
}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one `error: ...` paragraph (see course.cli.run_cli)."""

    def error(self, message: str):
        raise UserError(f"{message} (see `python {self.prog} --help`)")


def refuse_to_overwrite(path: Path, protected: list[Path], what: str) -> None:
    """Stop if an output path is a folder or a file we must not overwrite (the reference, a submission)."""
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder: give a file name")
    for keep in protected:
        if path.resolve() == keep.resolve() or (path.exists() and keep.exists() and path.samefile(keep)):
            raise UserError(f"{what} {path} would overwrite {keep}: choose another file")


def write_output(path: Path, data: bytes | str) -> None:
    """Write an output file atomically; a path that is not a regular file (/dev/stdout, a pipe, a link) in place."""
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        with open(path, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
    else:
        write_atomically(path, data)


def options_for(args: argparse.Namespace, ref: Reference):
    """The grading options of the command line; the sandbox warning is printed here, once."""
    from grading.judge import Options
    from grading.reference import ReferenceAnswers
    from grading.sandbox import Limits, check_sandbox

    limits = Limits(timeout=args.timeout, cpu=args.cpu_limit, memory_gb=args.memory_gb)
    use_bwrap, warning = check_sandbox(args.sandbox)
    if warning:
        print("\n" + "!" * 100 + "\n" + textwrap.fill(warning, 100) + "\n" + "!" * 100 + "\n", file=sys.stderr)
    return Options(ref, ReferenceAnswers(ref, max(args.timeout, 300)), limits, use_bwrap, seed=args.seed)


def cmd_skeleton(args: argparse.Namespace) -> None:
    """Write the student skeleton."""
    output = Path(args.output)
    refuse_to_overwrite(output, [REFERENCE], "-o")
    ref = Reference.load()
    write_output(output, make_skeleton(ref.text))
    print(f"wrote {output}: {len(ref.blanks)} blanks, {sum(b.points for b in ref.blanks.values())} points")


def cmd_check(args: argparse.Namespace) -> int:
    """Grade one file (full report) or a cohort (a listing). Ctrl-C writes what was graded; --resume finishes it."""
    from grading.batch import cost, grade_all
    from grading.cohort import flag_similar, summary_lines, write_summary_png
    from grading.intake import find_submissions
    from grading.report import NOT_GRADED_YET, listing, report

    target = Path(args.path)
    if not target.exists():
        raise UserError(f"{target}: no such file or folder")
    intake = find_submissions(target)
    submissions, cohort = intake.submissions, target.is_dir() or target.suffix == ".zip"
    outputs = [Path(p) for p in (args.csv, args.json) if p]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise UserError("--csv and --json name the same file")
    for output in outputs:
        refuse_to_overwrite(output, [REFERENCE, LAYER_TESTS, *[s.path for s in submissions]], "output")
    ref = Reference.load()
    kept_rows, kept_json = earlier_results(args, list(ref.blanks), cohort) if args.resume else ({}, {})
    todo = [s for s in submissions if s.student not in kept_rows]
    options = options_for(args, ref)
    started = time.perf_counter()
    grades, failures, interrupted = [], [], False
    try:
        options.ready()
        for grade in grade_all(todo, options, args.jobs, failures):
            grades.append(grade)
            if not cohort or args.details:
                print(report(grade), flush=True)
            else:
                print(f"[{len(kept_rows) + len(grades)}/{len(submissions)}] {grade.student}: "
                      f"{grade.total}/{grade.max_total}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        options.reference.close()
    if cohort and grades:
        flagged = flag_similar(grades)  # before the listing: the flags show there, in the CSV and in results.json
        print("\n".join(listing(grades) + [""] + summary_lines(grades)), flush=True)
        picture = write_summary_png(grades, Path(args.csv).with_suffix(".summary.png")) if args.csv else None
        print(f"{flagged} submission(s) flagged as similar to another" + (f"; summary drawn in {picture}"
                                                                          if picture else ""), file=sys.stderr)
        print(f"{intake.summary()}; {cost(grades, options, time.perf_counter() - started, args.jobs)}",
              file=sys.stderr)
    if failures:
        log = error_log(args)
        write_output(log, "\n".join(failures))
        print(f"the grader failed on {len(failures)} submission(s): their rows say 'could not be graded'; "
              f"the tracebacks are in {log}", file=sys.stderr)
    pending = [s.student for s in todo[len(grades):]]  # grade_all yields in order: the rest was not graded
    write_results(args, list(ref.blanks), grades, kept_rows, kept_json, pending, cohort)
    if not interrupted:
        return 0
    print(f"interrupted: {len(kept_rows) + len(grades)} of {len(submissions)} students graded"
          + (f"; the other {len(pending)} rows of {args.csv} say '{NOT_GRADED_YET}'. To grade only them, run the "
             "same command again with --resume." if args.csv and cohort else "."), file=sys.stderr)
    return 130


def earlier_results(args: argparse.Namespace, blank_ids: list[str], cohort: bool) -> tuple[dict, dict]:
    """--resume: the finished rows of the earlier --csv, and the earlier --json's results of those students."""
    from grading.report import finished_rows

    if not (args.csv and cohort):
        raise UserError("--resume finishes an interrupted batch: give the folder and the same --csv as before")
    try:
        rows = finished_rows(Path(args.csv).read_text(encoding="utf-8"), blank_ids)
        earlier = json.loads(Path(args.json).read_text(encoding="utf-8")) if args.json else {}
    except FileNotFoundError as error:
        raise UserError(f"--resume: {error.filename} does not exist: nothing to finish (run without --resume)") \
            from None
    except ValueError:
        raise UserError(f"--resume: {args.json} is not the JSON an earlier batch wrote") from None
    return rows, {student: earlier[student] for student in rows if isinstance(earlier, dict) and student in earlier}


def write_results(args: argparse.Namespace, blank_ids: list[str], grades: list, kept_rows: dict, kept_json: dict,
                  pending: list[str], cohort: bool) -> None:
    """Write --csv and --json: the rows kept from an earlier run, the grades of this one, the students pending."""
    from grading.report import csv_text, gradescope

    if args.csv and (grades or kept_rows or pending):
        write_output(Path(args.csv), csv_text(grades, blank_ids, kept_rows, pending))
        print(f"wrote {args.csv}")
    if args.json and (grades or kept_json):
        results = kept_json | {g.student: gradescope(g) for g in grades} if cohort else gradescope(grades[0])
        write_output(Path(args.json), json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")


def error_log(args: argparse.Namespace) -> Path:
    """Where the grader's tracebacks go: next to the CSV (or the JSON), else grade-errors.log here."""
    beside = next((Path(p) for p in (args.csv, args.json) if p and Path(p).parent.is_dir()), None)
    return beside.parent / f"{beside.stem}.errors.log" if beside and beside.parent != Path("/dev") \
        else Path("grade-errors.log")


def cmd_handout(args: argparse.Namespace) -> None:
    """Write the students' repository."""
    from grading.handout import write_handout

    files = write_handout(Path(args.output), args.data_archive)
    print(f"wrote {args.output}: {len(files)} files ({', '.join(f for f in files if '/' not in f)})")


def cmd_autograder(args: argparse.Namespace) -> None:
    """Write the Gradescope autograder zip."""
    from grading.autograder import build_zip

    output = Path(args.output)
    refuse_to_overwrite(output, [REFERENCE], "-o")
    data, names = build_zip()
    write_output(output, data)
    print(f"wrote {output}: {len(names)} files; upload it as the assignment's autograder on Gradescope")


def cmd_gradescope(args: argparse.Namespace) -> None:
    """Grade the submission of a Gradescope autograder tree (run_autograder calls this)."""
    from grading.autograder import run_autograder
    from grading.report import report

    root = Path(args.root)
    if not (root / "submission").is_dir():
        raise UserError(f"{root}/submission is not a folder: is {root} an autograder tree?")
    options = options_for(args, Reference.load())
    try:
        results, grade = run_autograder(root, options)
    finally:
        options.reference.close()
    if grade:
        print(report(grade))
    print(f"wrote {results}")


def add_limits(parser: argparse.ArgumentParser) -> None:
    """The options on limits and on the sandbox, shared by the commands that grade."""
    parser.add_argument("--timeout", type=positive_float, default=120, metavar="SECONDS", help=LIMITS_HELP["timeout"])
    parser.add_argument("--cpu-limit", type=positive_float, default=60, metavar="SECONDS", help=LIMITS_HELP["cpu"])
    parser.add_argument("--memory-gb", type=positive_float, default=4, metavar="GB", help=LIMITS_HELP["memory"])
    parser.add_argument("--sandbox", choices=("auto", "bwrap", "process"), default="auto", help=LIMITS_HELP["sandbox"])
    parser.add_argument("--seed", type=natural_int, metavar="N", help=LIMITS_HELP["seed"])


def output_command(commands, name: str, run, summary: str, description: str, default: str, metavar: str,
                   output_help: str) -> argparse.ArgumentParser:
    """A subcommand whose one option, -o, says where its output goes."""
    command = commands.add_parser(name, help=summary, description=description)
    command.add_argument("-o", "--output", default=default, metavar=metavar, help=output_help)
    command.set_defaults(run=run)
    return command


def build_parser() -> Parser:
    """The command-line interface."""
    parser = Parser(prog="grade.py", description="Grading tools for the ResNet-50 assignment: the student skeleton "
                    "and handout, grading submissions, the Gradescope autograder.",
                    formatter_class=argparse.RawDescriptionHelpFormatter, epilog=textwrap.dedent("""\
                        examples:
                          python grade.py skeleton                      write student/resnet.py
                          python grade.py check alice.py                full report for one file
                          python grade.py check submissions/ --jobs 4 --csv grades.csv --json results.json
                          python grade.py handout -o handout            the students' repository
                          python grade.py autograder -o autograder.zip  the zip to upload to Gradescope

                        `python grade.py COMMAND --help` explains each command's options.
                        How a blank is graded, the sandbox, the batch rate: docs/grading.md."""))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    output_command(commands, "skeleton", cmd_skeleton, "write the student version of resnet.py (answers removed)",
                   "Write resnet.py with every answer replaced by a hint and a 'fill in here' placeholder. The "
                   "marker lines stay, for grading.", "student/resnet.py", "FILE",
                   "where to write the skeleton (default: student/resnet.py); never resnet.py itself")
    check = commands.add_parser("check", help="grade one submission, or a folder of them",
                                description="Grade each blank: its text (same, equivalent, different, missing), "
                                "what it builds spliced into the reference, and the code outside the blanks. "
                                "A blank scores its points if its text or its build is accepted and nothing "
                                "outside the blanks changes what it builds. See docs/grading.md.")
    check.add_argument("path", metavar="PATH", help="a student's resnet.py (or notebook), or a folder or .zip of "
                       "submissions: STUDENT.py, STUDENT.ipynb, STUDENT/.../resnet.py, or a Canvas, Moodle, "
                       "Blackboard or Gradescope download; every student gets one row (docs/grading.md)")
    check.add_argument("--csv", metavar="FILE", help="write a CSV: student, points per blank, total, review "
                       "flags, notes")
    check.add_argument("--json", metavar="FILE", help="write Gradescope-format results with every detail: one "
                       "object for a file, a dict of objects keyed by student for a folder")
    check.add_argument("--resume", action="store_true",
                       help="finish a batch that was interrupted (Ctrl-C): keep the graded rows of --csv (and "
                       "--json) and grade only the students whose row says 'not graded yet'")
    check.add_argument("--details", action="store_true",
                       help="for a folder, print every student's full report before the listing")
    check.add_argument("--jobs", type=positive_int, default=os.cpu_count() or 1, metavar="N",
                       help=f"submissions graded at once (default: the number of cores, {os.cpu_count()})")
    add_limits(check)
    check.set_defaults(run=cmd_check)
    handout = output_command(commands, "handout", cmd_handout, "write the repository students get",
                             "Write a new folder with the skeleton as resnet.py, main.py and the modules it needs, "
                             "the checkpoints, the per-layer tests, check.py, a README for students and "
                             "requirements.txt. No reference answers, no grader.", "handout", "DIR",
                             "the folder to create (default: handout); it must not exist yet")
    handout.add_argument("--data-archive", metavar="PATH", help="where students find the course's archive of "
                         "CIFAR-10's training images (cifar10-train-jpg.tar.gz), as they type it: the students' "
                         "README then gives the commands that unpack it; without it, it tells them to ask you")
    output_command(commands, "autograder", cmd_autograder, "write the Gradescope autograder zip",
                   "Write the zip to upload to Gradescope: setup.sh, run_autograder, the grader, the reference, "
                   "the tests and pinned requirements.", "autograder.zip", "FILE",
                   "where to write the zip (default: autograder.zip)")
    gradescope = commands.add_parser("gradescope", help="grade inside Gradescope (what run_autograder runs)",
                                     description="Grade ROOT/submission/resnet.py and write "
                                     "ROOT/results/results.json in Gradescope's format.")
    gradescope.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"), metavar="DIR",
                            help="the autograder tree (default: $AUTOGRADER_ROOT, else /autograder)")
    add_limits(gradescope)
    gradescope.set_defaults(run=cmd_gradescope)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; a problem with the input raises UserError (course.cli.run_cli prints it)."""
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except BrokenPipeError:  # the reader went away (`... | head`): course.cli.run_cli ends quietly
        raise
    except OSError as error:
        raise UserError(f"{error.filename}: {error.strerror}" if error.filename else str(error)) from None
    return code or 0
