"""experiments/grading_cohort.py writes 40 files, each of the kind its name says."""
import json

import pytest

from experiments import grading_cohort


def test_forty_files_and_only_the_syntax_error_does_not_compile(tmp_path):
    grading_cohort.main([str(tmp_path / "c")])
    written = sorted(p.relative_to(tmp_path / "c").as_posix() for p in (tmp_path / "c").rglob("*") if p.is_file())
    assert written == sorted(grading_cohort.files()) and len(written) == 40
    for name, text in grading_cohort.files().items():
        if name.endswith(".ipynb"):
            cells = json.loads(text)["cells"]
            text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if name == "syntax_in_one_blank.py":
            with pytest.raises(SyntaxError):
                compile(text, name, "exec")
        else:
            compile(text, name, "exec")
    assert grading_cohort.files()["copy_a.py"] != grading_cohort.files()["copy_b.py"]


def test_an_existing_folder_is_refused(tmp_path):
    with pytest.raises(grading_cohort.cli.UserError, match="exists already"):
        grading_cohort.main([str(tmp_path)])
