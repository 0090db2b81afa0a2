"""tools/asv_gate.py: the CI gate's decision, driven by scripted ``asv continuous`` outputs.

The real gate (two commits built and measured) is tools/asv_gate_demo.py: minutes, not a test.
Here asv is a fake that answers each pass from a script, so what is tested is the rule:
a point fails the gate only when every pass reports it slower.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tools.asv_gate import main, regressions, run_gate, selection_regex

A = "gradient.Gradient.track_time('structured', 1, 784, 10, 'float32')"
B = "gradient.Gradient.track_time('naive', 8, 784, 10, 'float32')"
C = "epoch.Epoch.track_time('structured', 96, 'float32')"


def table(*rows: tuple[str, str]) -> str:
    """asv continuous's output with a table of (mark, benchmark) rows."""
    lines = [
        "| Change   | Before [c0] <main~1>   | After [c1] <main>   |   Ratio "
        "| Benchmark (Parameter) |",
        "|----------|------------------------|---------------------|---------|-----------------------|",
    ]
    lines += [
        f"| {mark}        | 100±1μs   | 150±2μs   |    1.50 | {name} |" for mark, name in rows
    ]
    worse = any(mark in "+!" for mark, _ in rows)
    return "\n".join(
        lines + ["", "PERFORMANCE DECREASED." if worse else "BENCHMARKS NOT SIGNIFICANTLY CHANGED."]
    )


class FakeAsv:
    """Answers pass i with script[i]: (exit status, table rows); records each call's arguments."""

    def __init__(self, *script):
        self.script, self.calls = list(script), []

    def __call__(self, args):
        self.calls.append(args)
        status, rows = self.script[len(self.calls) - 1]
        return status, table(*rows)


def test_the_table_parser_finds_each_slower_point_once_without_its_environment():
    out = table(
        ("+", A),
        ("-", B),
        ("+", C + " [vm/virtualenv-py3.11-SOFTMAX_DEVICEcpu]"),
        ("+", C + " [vm/virtualenv-py3.11-SOFTMAX_DEVICEcpu-SOFTMAX_THREADS1]"),
    )
    assert regressions(out) == [A, C]
    assert regressions("PERFORMANCE DECREASED.\n| + | garbage") == []


def test_the_selection_regex_selects_exactly_the_points_as_asv_names_them():
    rx = re.compile(selection_regex([A, C]))
    assert rx.search(A) and rx.search(C)
    assert not rx.search(B)
    assert not rx.search(A.replace("784", "1000"))  # parentheses, quotes and dots are literal


def test_a_point_that_drift_flagged_once_does_not_fail_the_gate():
    """Without the confirming passes this is plain asv continuous: exit 1 on a no-op."""
    asv = FakeAsv((1, [("+", A), ("+", B), ("-", C)]), (0, []))
    result = run_gate("c0", "c1", asv=asv, asv_args=("--machine", "m"))
    assert result.status == 0 and result.flagged == [[A, B], []]
    first, confirm = asv.calls
    assert first[:6] == ["continuous", "--factor", "1.2", "--interleave-rounds", "-a", "rounds=3"]
    assert "--bench" not in first and first[-2:] == ["c0", "c1"]
    assert confirm[confirm.index("-a") + 1] == "rounds=6"
    assert re.compile(confirm[confirm.index("--bench") + 1]).search(B)
    assert "--machine" in confirm


def test_a_point_slower_in_every_pass_fails_the_gate_and_only_it_is_named():
    asv = FakeAsv((1, [("+", A), ("+", B)]), (1, [("+", A), ("+", C)]), (1, [("+", A)]))
    result = run_gate("c0", "c1", asv=asv)
    assert result.status == 1 and result.regressions == [A]
    assert len(asv.calls) == 3  # two confirming passes, each on what is still slower
    third = asv.calls[2]
    assert re.compile(third[third.index("--bench") + 1]).search(A)
    assert not re.compile(third[third.index("--bench") + 1]).search(B)


def test_confirm_zero_is_one_interleaved_pass():
    result = run_gate("c0", "c1", confirm=0, asv=FakeAsv((1, [("+", A)])))
    assert result.status == 1 and result.regressions == [A]


def test_asv_failing_is_an_error_not_a_regression():
    """asv exits 1 on an unknown commit or an empty selection, with no '+' row: exit 2, not 1."""
    assert (
        run_gate("nosuchcommit", "c1", asv=lambda args: (1, "· Unknown commit nosuchcommit")).status
        == 2
    )
    assert run_gate("c0", "c1", asv=FakeAsv((2, []))).status == 2
    # a confirming pass that asv cannot run is an error too, not a pass
    assert run_gate("c0", "c1", asv=FakeAsv((1, [("+", A)]), (1, []))).status == 2


@pytest.mark.parametrize(
    "selection",
    [("--bench", "gradient"), ("-bgradient",), ("--ben", "gradient"), ("--bench=gradient",)],
)
def test_the_users_selection_holds_for_the_first_pass_only(selection):
    asv = FakeAsv((1, [("+", A)]), (0, []))
    run_gate("c0", "c1", asv=asv, asv_args=(*selection, "--show-stderr", "-a", "warmup_time=0"))
    first, confirm = asv.calls
    assert all(token in first for token in selection)
    assert not any(token in confirm for token in selection if token != "--bench")
    assert confirm.count("--bench") == 1 and confirm[
        confirm.index("--bench") + 1
    ] == selection_regex([A])
    assert "--show-stderr" in confirm and "warmup_time=0" in confirm


@pytest.mark.parametrize(
    "asv_args, message",
    [
        (("--factor", "5"), "--factor belongs to the gate"),
        (("-f5",), "--factor belongs to the gate"),
        (("-a", "rounds=1"), "rounds= is the gate's"),
        (("--attribute=rounds=2",), "rounds= is the gate's"),
    ],
)
def test_asv_arguments_that_would_override_the_gate_are_refused(asv_args, message):
    asv = FakeAsv()
    with pytest.raises(ValueError, match=message):
        run_gate("c0", "c1", asv=asv, asv_args=asv_args)
    assert asv.calls == []


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"factor": 1.0}, "factor must be above 1"),
        ({"rounds": 0}, "rounds must be a positive"),
        ({"confirm_rounds": 2.5}, "confirm_rounds must be"),
        ({"confirm": -1}, "confirm must be a whole number"),
    ],
)
def test_bad_settings_are_refused_before_asv_runs(kw, message):
    asv = FakeAsv()
    with pytest.raises(ValueError, match=message):
        run_gate("c0", "c1", asv=asv, **kw)
    assert asv.calls == []


def test_the_cli_takes_its_options_anywhere_before_the_double_dash(monkeypatch, capsys):
    import tools.asv_gate as gate

    asv = FakeAsv((0, []))
    monkeypatch.setattr(gate, "_run_asv", asv)
    monkeypatch.chdir(Path(gate.__file__).resolve().parent.parent)  # where asv.conf.json is
    assert main(["base", "head", "--confirm", "1", "--", "--show-stderr"]) == 0
    (args,) = asv.calls
    assert args[-3:] == ["--show-stderr", "base", "head"]
    assert "PASS" in capsys.readouterr().out
    assert main(["base", "head", "--", "--factor", "2"]) == 2
    assert "--factor belongs to the gate" in capsys.readouterr().err


def test_the_cli_outside_a_repository_says_where_to_run_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["origin/main", "HEAD"]) == 2
    assert "run from the repository root" in capsys.readouterr().err
