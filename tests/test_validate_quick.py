"""The quick tier of every registered check (what ``diffphase validate`` runs in CI).

Toolkit checks must pass; a paper check may disagree (a finding), but must not crash.
"""

from __future__ import annotations

import pytest

from diffphase.validate.registry import available_models, format_table, run_checks


@pytest.mark.parametrize("model", available_models())
def test_quick_tier(model):
    results = run_checks(model, "quick", seed=0)
    assert results, f"no quick checks registered for {model}"
    print(format_table(results))
    crashed = [r for r in results if r.status == "error"]
    assert not crashed, crashed[0].message
    failed = [r.as_row() for r in results if r.status == "fail"]
    assert not failed, failed


def test_validate_command_exit_code_and_report(tmp_path):
    from click.testing import CliRunner

    from diffphase.cli import cli

    result = CliRunner().invoke(cli, ["validate", "--model", "spectral", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "spectral/cdf" in result.output and "pass" in result.output
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.json").exists()
