"""tests/conftest.py: in CI a skipped test fails the run; on a developer's machine it stays a skip."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


@pytest.mark.parametrize("ci, outcome", [("true", "failed"), ("1", "failed"), ("false", "skipped"), ("", "skipped")])
def test_a_skip_fails_only_in_ci(pytester, monkeypatch, ci, outcome):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile("import pytest\n\ndef test_cluster():\n    pytest.skip('apt cannot install slurm-wlm')\n")
    monkeypatch.setenv("CI", ci)
    result = pytester.runpytest()
    result.assert_outcomes(**{outcome: 1})
