"""tests/conftest.py inside the sandbox: the per-layer tests get the module the runner already imported.

The project's own tests/conftest.py imports the file again (its top-level code would run twice) and
reaches for the project's folder; inside the sandbox there is neither.
"""
import sys

import pytest


@pytest.fixture(scope="session")
def impl():
    """The submission under test: imported once, by the runner, as `resnet`."""
    return sys.modules["resnet"]
