"""grading/cohort.py: the similarity flag's rule and the cohort's summary, on grades made by hand (no sandbox)."""
from pathlib import Path

from grading.cohort import flag_similar, shape_of, summary_lines, write_summary_png
from grading.judge import BlankGrade, Grade

RIGHT = ["        self.fc = nn.Linear(1024, num_classes)\n"]
WRONG = ["        self.fc = nn.Linear(1024, 10)  # fixed at ten\n"]
WRONG_RENAMED = ["        self.fc = nn.Linear(\n            1024, 10)\n"]
POOL = ["        self.avgpool = nn.AdaptiveAvgPool2d(1)\n"]
POOL_2 = ["        self.avgpool = nn.AvgPool2d(2)  # the 2 x 2 map\n"]  # right, but not the reference's form


def grade(student: str, fc: list[str], pool: list[str], points: tuple[int, int]) -> Grade:
    """A submission of two blanks, fc and avgpool, with these answers and points (out of 10 and 5)."""
    blanks = [BlankGrade("fc", 10, "hint", RIGHT, fc, "same" if points[0] == 10 else "different", [], points=points[0]),
              BlankGrade("avgpool", 5, "hint", POOL, pool, "same", [], points=points[1])]
    return Grade(student, Path(f"{student}.py"), blanks)


def test_names_comments_and_formatting_do_not_count_but_the_code_does():
    assert shape_of(WRONG) == shape_of(WRONG_RENAMED) != shape_of(RIGHT)
    assert shape_of(["a = f(x)  # one\n"]) == shape_of(["b = g(y)\n"])  # names: order of first appearance
    assert shape_of(["a = f(x)\n"]) != shape_of(["a = f(a)\n"])
    assert shape_of(["    nn.Conv2d(3, 64, 7,\n"]) == shape_of(["nn.Conv2d(3,64,7,  # cut\n"])  # not Python alone


def test_two_shared_unusual_answers_are_flagged_one_common_mistake_and_right_answers_are_not():
    pools = ["        self.avgpool = nn.AvgPool2d(\n", "            2)\n"]  # formatted otherwise: the same tree
    cohort = [grade("alice", WRONG, POOL_2, (0, 5)), grade("bob", WRONG_RENAMED, pools, (0, 5)),
              grade("carol", WRONG, POOL, (0, 5)), grade("dan", WRONG, POOL, (0, 5)),  # one common mistake
              grade("erin", RIGHT, POOL, (10, 5)), grade("fay", RIGHT, POOL, (10, 5))]  # right, alike
    cohort += [grade(f"other{i}", RIGHT, [f"        x = {i}\n"], (10, 0)) for i in range(34)]  # 40 in all
    assert flag_similar(cohort) == 2
    flags = {g.student: g.review for g in cohort}
    assert len(flags["alice"]) == 1 and flags["alice"][0].startswith("similar to bob:")
    assert flags["bob"][0].startswith("similar to alice:")
    assert flags["carol"] == flags["dan"] == flags["erin"] == flags["fay"] == []


def test_a_large_group_is_a_common_mistake_not_copying():
    cohort = [grade(f"s{i}", WRONG, POOL_2, (0, 5)) for i in range(3)]
    cohort += [grade(f"t{i}", RIGHT, POOL, (10, 5)) for i in range(37)]  # 40: at most 2 (5 %) in a group
    assert flag_similar(cohort) == 0


def test_the_summary_gives_each_blank_s_full_marks_and_a_histogram(tmp_path):
    cohort = [grade("a", RIGHT, ["p = 1\n"], (10, 5)), grade("b", WRONG, ["p = 1\n"], (0, 5)),
              grade("c", RIGHT, ["p = 1\n"], (10, 0))]
    lines = summary_lines(cohort)
    assert "  fc                 66.7 %  (2/3)" in lines and "  avgpool            66.7 %  (2/3)" in lines
    bins = {line.split(" %")[0].strip(): int(line.split()[-1]) for line in lines if line.endswith(tuple("0123"))
            and " % " in line}
    assert len(bins) == 10 and bins["90-100"] == bins["30-40"] == bins["60-70"] == 1  # totals 15, 5, 10 of 15
    png = write_summary_png(cohort, tmp_path / "grades.summary.png")
    assert png.read_bytes().startswith(b"\x89PNG")
