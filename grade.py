#!/usr/bin/env python3
"""Grading tools for the ResNet-50 assignment (the grading/ package does the work).

    python grade.py skeleton [-o student/resnet.py]       the file students get
    python grade.py check alice.py                        a full report for one file
    python grade.py check submissions/ --jobs 4 --csv grades.csv --json results.json
    python grade.py handout -o handout                    the repository students get
    python grade.py autograder -o autograder.zip          the Gradescope autograder

How a blank is graded, the sandbox and the batch rate: docs/grading.md.
"""
from course.cli import run_cli
from grading.cli import main

if __name__ == "__main__":
    run_cli(main)
