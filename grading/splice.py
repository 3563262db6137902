"""The files the sandbox builds, each a resnet.py: no file given to the sandbox holds a reference answer.

    splice     one blank's answer (the student's, or the reference's for the reference build) in the
               reference's code, every other blank a stand-in: the skeleton's placeholder, or for the
               blocks a "hollow" branch (two 1x1 convolutions with the block's channels and stride around
               a 3x3 average, not the answer) so that layer2-4 still build and run, and where a block
               halves H and W still shows in their outputs. Nothing else of the student's file runs.
    answers    every one of the student's answers in the reference's code: compared with what the
               student's whole file builds, it shows whether code outside the blanks changes a blank.
    submitted  the student's file as it is, re-encoded as UTF-8.
"""
from __future__ import annotations

import textwrap

from grading.compare import Reference
from grading.markers import CODING, as_utf8, fill_blanks, indent_of

HOLLOW = "_grading_hollow_branch"
HOLLOW_HELPER = f'''

def {HOLLOW}(in_channels, middle_channels, out_channels, stride):
    """Grading stand-in for a block's branch while another blank is graded (the average mixes neighbours, so
    which block subsamples shows in the output)."""
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(in_channels, middle_channels, 1, stride),
                         nn.Conv2d(middle_channels, out_channels, 1))
'''
STAND_INS = {  # blank -> the item that stands in for it when another blank is graded
    "stem_conv": "nn.Conv2d(3, 64, 1),",
    "block_downsample": f"{HOLLOW}(in_channels, middle_channels, out_channels, 2),",
    "block_same": f"{HOLLOW}(in_channels, middle_channels, out_channels, 1),",
}


def stand_in(ref: Reference, blank_id: str) -> list[str]:
    """The lines that stand in for a blank that is not being graded."""
    if blank_id not in STAND_INS:
        return ref.placeholders[blank_id]
    indent = indent_of(ref.text.splitlines()[ref.blanks[blank_id].begin])
    return [f"{indent}{STAND_INS[blank_id]}\n"]


def reindent(ref: Reference, blank_id: str, answer: list[str]) -> list[str]:
    """An answer's lines indented as the reference's blank is (a file indented with tabs still fits)."""
    indent = indent_of(ref.text.splitlines()[ref.blanks[blank_id].begin])
    body = textwrap.dedent("".join(line.rstrip("\r\n") + "\n" for line in answer))
    return [indent + line if line.strip() else line for line in body.splitlines(keepends=True)]


def splice(ref: Reference, blank_id: str, answer: list[str]) -> str:
    """The reference's code with one blank's answer in it and stand-ins everywhere else."""
    answers = {other: stand_in(ref, other) for other in ref.blanks if other != blank_id}
    answers[blank_id] = reindent(ref, blank_id, answer)
    return fill_blanks(ref.text, answers) + HOLLOW_HELPER


def answers_file(ref: Reference, answers: dict[str, list[str]]) -> str:
    """The reference's code with the student's answers (the placeholder where a blank was not found)."""
    return fill_blanks(ref.text, {b: reindent(ref, b, answers.get(b, ref.placeholders[b])) for b in ref.blanks})


def submitted_file(text: str) -> str:
    """The student's file, to be written as UTF-8 (a `coding:` line naming another encoding is changed)."""
    return as_utf8(text) if any(CODING.match(line) for line in text.splitlines()[:2]) else text
