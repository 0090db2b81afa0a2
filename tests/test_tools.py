"""The scripts in tools/ that read result folders, on fabricated sweeps and asv results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from report_sets import CPU, grid_rows, write_set
from test_report_make import write_asv

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def check_measurement(monkeypatch, tmp_path):
    """tools/check_measurement.py's ``main`` on two fabricated quiet sweeps and asv results
    (``run(*options)`` -> exit status)."""
    pytest.importorskip("asv", reason="asv is not installed: pip install 'softmax-bench[test]'")
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    from tools import check_measurement

    rows = grid_rows(CPU, batches=(1, 32), classes=(10, 100), features=(784,), epochs=(1, 32))
    quiet = [str(write_set(tmp_path / name, rows)) for name in ("a", "b")]
    asv = str(write_asv(tmp_path / "asv"))

    def run(*options: str) -> int:
        monkeypatch.setattr(sys, "argv", ["check_measurement.py", *quiet, "--asv", asv, *options])
        return check_measurement.main()

    return run


def test_check_measurement_sets_asv_beside_the_sweep(check_measurement, capsys):
    """``--asv``: the newest commit's asv times joined with QUIET_A's points, a line for each
    beyond 10%."""
    assert check_measurement() == 0
    out = capsys.readouterr().out.splitlines()
    five = out.index(next(line for line in out if line.startswith("5.")))
    # 8 gradient points, the newest commit's last one skipped, and 2 epochs
    assert out[five].startswith(
        "5. sweep vs asv (virtualenv-py3.11, commit cccc3333): 9 points in both;"
    )
    assert "   gradient structured B=1 n=784 k=10: asv 6e-05 s, sweep 4.006e-05 s" in out
    assert "   epoch structured B=32: asv 0.06 s, sweep 0.1306 s" in out
    assert len(out) == five + 10


def test_check_measurement_names_the_asv_environments_when_none_matches(check_measurement):
    with pytest.raises(SystemExit, match=r"0 environments matching 'nomatch'.*virtualenv-py3\.11"):
        check_measurement("--asv-env", "nomatch")
