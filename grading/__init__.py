"""Grading tools for the ResNet-50 assignment (`python grade.py --help` runs them).

One module, one job; the parent process never imports torch or a student's code. The facts of the
assignment (its blanks and markers, its sizes, the probes) are course/assignment.py's, shared with check.py.

    markers       the grader's side of the blanks: check the reference's, fill them, make the skeleton, read sources
    forms         answers in normal form (constants folded, repeats expanded) for the text comparison
    compare       the text verdict on one answer (same, equivalent, different, missing) with its notes
    outside       changes outside the blanks: code added or removed, answers just outside a marker
    splice        the files the sandbox builds: one blank's answer in the reference's code, and more
    sandbox       run jobs in bubblewrap (or, where it is missing, under process limits only); check answers
    runner        runs INSIDE the sandbox: imports, per-layer tests, builds and fingerprints modules
    fingerprint   runs inside the sandbox too: what a blank builds, as comparable JSON (its probes: course/assignment)
    reference     the reference's fingerprints for a submission's seed, computed outside the sandbox
    builds        compares fingerprints (torch-free) and says how two builds differ
    judge         grades one submission from its text, its builds and its tests
    report        text reports, the batch listing, the CSV, Gradescope results
    batch         grades many submissions, --jobs at a time, against one reference build
    autograder    the Gradescope autograder zip, and grading inside it
    handout       the repository students get
    cli           the command line

Files that are not modules of the grader: sandbox_conftest.py (tests/conftest.py inside the sandbox),
sandbox_site/sitecustomize.py (no network for any Python of the sandbox), gradescope/ (setup.sh and
run_autograder for the autograder zip), handout_README.md (the students' README). docs/grading.md
explains grading for TAs.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent
REFERENCE = ROOT / "resnet.py"
LAYER_TESTS = ROOT / "tests" / "test_resnet.py"
