"""Reports: report.md and its PNG plots from sweep folders and/or asv results.

:func:`make_report` reads sweep folders (``results.csv`` and ``environment.json``) with
:mod:`.results`, optionally asv results with :mod:`.asv`, analyses them with :mod:`.analysis`,
draws :mod:`.plots` and :mod:`.plots_machine`, and writes :mod:`.markdown`'s sections.

Plots: :data:`PLOTS` and ``asv_history.png``, each left out, with the reason in report.md,
when its data are missing.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..fileio import atomic_write_text
from ..runs import envfile
from . import markdown as md
from .analysis import throughput_table
from .asv import asv_points, commits_in_order, history_table, pick_benchmark
from .asv_results import load_asv_results
from .headline import headline_section, notes_section
from .plots import (
    NotDrawn,
    save,
    time_vs_batch,
    time_vs_classes,
)
from .plots_machine import (
    asv_history,
    cpu_vs_gpu,
    predicted_vs_measured,
    roofline,
    throughput_vs_batch,
)
from .plots_naive import memory_vs_classes, ratio_vs_classes
from .results import ResultSets, as_paths, empty_frame, load_results, read_set, set_folder, shown
from .scaling import PLOTS as SCALING_PLOTS
from .scaling import is_scaling
from .scaling import write_report as write_scaling_report

#: name: (draw(df), title, caption (or caption(df)), the section that follows it)
PLOTS: dict[str, tuple[Callable, str, str | Callable, Callable | None]] = {
    "time_vs_classes.png": (
        time_vs_classes,
        "Gradient time vs k",
        (
            "Time of one gradient call against the number of classes k, log-log, one panel per "
            "feature count n (rows) and batch size B (columns) of the grid, so a custom grid is "
            "drawn whole. Bars: the 95% confidence interval of the median; hollow markers: points "
            "not marked stable."
        ),
        md.slopes_section,
    ),
    "time_vs_batch.png": (
        time_vs_batch,
        "Gradient time vs B",
        (
            "The same points against the batch size B, one panel per n and k. Naive's time grows "
            "in proportion to B (one Jacobian per example); structured's stays flat while the call "
            "is overhead-bound and grows once the GEMMs dominate."
        ),
        lambda df: md.slopes_section(df, "batch"),
    ),
    "memory_vs_classes.png": (
        memory_vs_classes,
        "Peak memory vs k",
        (
            "Measured peak memory above the inputs (markers) over the cost model's prediction "
            "(lines), one panel per n and B; crosses are points not run, at their predicted peak."
        ),
        None,
    ),
    "ratio_vs_classes.png": (
        ratio_vs_classes,
        "Naive / structured vs k",
        (
            "How many times slower (top, with the ratio's interval from both CIs) and bigger "
            "(bottom) naive is than structured, one colour per B; dotted: the cost model's ratio, "
            "dashed: the lecture's ratio k."
        ),
        None,
    ),
    "throughput_vs_batch.png": (
        throughput_vs_batch,
        "Throughput vs batch size",
        lambda df: (
            "Samples per second of "
            + _throughput_panels(df)
            + ", per result set, with the 95% interval "
            "as a band; dotted: the bound the set's machine allows (the roofline at its probed "
            "GEMM rate and copy bandwidth)."
        ),
        md.throughput_section,
    ),
    "roofline.png": (
        roofline,
        "Roofline",
        (
            "Achieved FLOP/s (cost-model FLOPs over the measured median, bars from the CI) against "
            "arithmetic intensity (FLOPs per byte of traffic), one panel per result set, under the "
            "ceilings the sweep probed on that machine: a square GEMM (flat) and a large copy "
            "(slope 1). A probe taken while other work loaded the machine reads low, and points "
            "can then sit above it."
        ),
        None,
    ),
    "predicted_vs_measured.png": (
        predicted_vs_measured,
        "Measured vs predicted time",
        (
            "Each ok point's measured median (with its CI) against the time model's prediction "
            "made before it ran; on the diagonal the model is exact, inside the band within a "
            "factor of 2."
        ),
        md.time_model_section,
    ),
    "cpu_vs_gpu.png": (
        cpu_vs_gpu,
        "CPU vs GPU",
        (
            "CPU time over GPU time for every point measured on both, against B; above 1 the GPU "
            "is faster. Dotted vertical lines mark a crossover batch size."
        ),
        md.crossover_section,
    ),
}
ASV_PLOT = "asv_history.png"


def _throughput_panels(df: pd.DataFrame) -> str:
    """What throughput_vs_batch.png draws, in its panels' order."""
    sources = set(throughput_table(df)["source"]) if not df.empty else set()
    panels = {
        "epoch": "whole SGD epochs",
        "gradient": "single structured gradient calls at MNIST's shape",
    }
    drawn = [panels[s] for s in ("epoch", "gradient") if s in sources]
    if len(drawn) == 2:
        return f"{drawn[0]} (left) and {drawn[1]} (right)"
    return (
        (drawn[0] if drawn else "nothing")
        + " (the only panel: the sweep measured no "
        + ("single gradient at that shape)" if "epoch" in sources else "whole epoch)")
    )


PLOT_FILES = (*PLOTS, ASV_PLOT)


def make_report(
    dirs: Iterable[str | os.PathLike] | None,
    out: str | os.PathLike,
    asv_dir: str | os.PathLike | None = None,
    asv_benchmark: str | None = None,
) -> Path:
    """Write ``out/report.md`` and its PNG plots from sweep folders and/or asv results.

    ``dirs``: sweep result folders (may be empty when ``asv_dir`` is given); ``out``: output
    folder, created if needed; ``asv_dir``: an asv results folder, whose benchmarks that name a
    whole point join the plots as set ``asv:<machine>`` (latest commit) and whose
    ``asv_benchmark`` (a full name or a unique part; default: the structured gradient's time)
    is drawn across commits.  Returns the path of report.md.

    Raises ValueError for nothing to report or bad input, naming a fix.
    """
    dirs, out = as_paths(dirs), Path(out)
    if not dirs and asv_dir is None:
        raise InputError(
            "nothing to report: give sweep result folders and/or an asv results folder"
        )
    if (out / "results.csv").is_file() and set_folder(out) not in map(set_folder, dirs):
        raise InputError(  # its report.md would describe other sets, beside its own results
            f"{out} holds a result set (results.csv) this report leaves out; fix: report it too, "
            "or choose another --out"
        )
    scaling = _scaling_set(dirs, asv_dir)
    if scaling is not None:
        claim(out, SCALING_PLOTS, REPORT_TITLES[1])
        return write_scaling_report(out, *scaling)
    sets = load_results(dirs) if dirs else ResultSets(empty_frame())
    asv = benchmark = history = None
    if asv_dir is not None:
        asv = load_asv_results(asv_dir)
        benchmark = pick_benchmark(asv, asv_benchmark)
        history = history_table(asv, benchmark, default_filter=asv_benchmark is None)
        points, envs, notes = asv_points(asv)
        frame = (
            pd.concat([sets.frame, points], ignore_index=True)
            if len(sets.frame) and len(points)
            else (points if len(points) else sets.frame)
        )
        sets = ResultSets(frame, {**sets.environments, **envs}, sets.notes + notes)
    claim(out, PLOT_FILES, REPORT_TITLES[0])
    drawn, not_drawn = {}, {}
    if sets.frame.empty:
        not_drawn.update(dict.fromkeys(PLOTS, "no sweep results"))
    else:
        for name, (draw, *_rest) in PLOTS.items():
            _draw(name, out, drawn, not_drawn, draw, sets.frame)
    if asv is not None:
        commits = commits_in_order(asv)
        _draw(ASV_PLOT, out, drawn, not_drawn, asv_history, history, benchmark, commits)
    for name in PLOT_FILES:
        if name not in drawn:  # a plot of the report before this one would not match it
            (out / name).unlink(missing_ok=True)
    path = out / "report.md"
    atomic_write_text(path, _text(sets, dirs, drawn, not_drawn, asv, asv_dir, benchmark, history))
    return path


#: The first line of every report.md softmax-bench writes (a sweep's, a scaling set's).
REPORT_TITLES = ("# softmax-bench report", "# Dask scaling")


def claim(out: Path, plots, title: str) -> None:
    """Make ``out`` this report's (:func:`check_claim`); then a report.md that names the plots
    it may draw is written first, so that a report stopped while drawing leaves files a later one
    knows as its own."""
    check_claim(out, plots)
    out.mkdir(parents=True, exist_ok=True)
    names = " ".join(f"![]({name})" for name in plots)
    atomic_write_text(out / "report.md", f"{title}\n\n(being written)\n\n<!-- {names} -->\n")


def check_claim(out: Path, plots=PLOT_FILES) -> None:
    """InputError unless every file a report would write or remove in ``out`` (report.md and
    ``plots``) is absent or was written by an earlier softmax-bench report there (a report.md of
    ours, and the plots it shows).  Reads only: a command asks it before it measures."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; fix: give a folder")
    report, ours = out / "report.md", set()
    if report.exists():
        text = report.read_text(encoding="utf-8", errors="replace") if report.is_file() else ""
        if not text.startswith(REPORT_TITLES):
            raise InputError(
                f"{report} was not written by softmax-bench report; fix: move it away, or "
                "choose another --out"
            )
        ours = set(re.findall(r"\]\(([^)\s]+\.png)\)", text))
    foreign = sorted(n for n in plots if (out / n).exists() and n not in ours)
    if foreign:
        raise InputError(
            f"{out / foreign[0]} is not a plot of a softmax-bench report in {out}; fix: move it "
            "away, or choose another --out"
        )


def _scaling_set(dirs: list[Path], asv_dir) -> tuple | None:
    """(rows, environment, notes) of a scaling set (``softmax-bench scale``'s), reported on its
    own; None for sweep sets."""
    found = []
    for folder in dirs:
        if not (folder / "results.csv").exists() and (folder / "out_of_core.json").exists():
            env = envfile.read_environment(folder, "delete it, or re-run into another --out")
            found.append((folder, None, env, []))  # only the larger-than-memory run
        elif (folder / "results.csv").is_file():
            env = envfile.read_environment(folder, "delete it, or re-run into another --out")
            if "dask_clusters" not in env:  # a sweep in this process: read once, by the report
                continue
            frame, notes = read_set(folder)
            if is_scaling(frame, env):
                found.append((folder, frame, env, notes))
    if not found:
        return None
    if len(dirs) > 1 or asv_dir is not None:
        raise InputError(
            f"{found[0][0]} is a scaling set (softmax-bench scale), reported on its own; fix: "
            f"`softmax-bench report {found[0][0]}`"
        )
    return found[0][1:]


def _draw(name, out: Path, drawn: dict, not_drawn: dict, draw, *args) -> None:
    """Save ``draw(*args)`` as ``out/name``, or say in ``not_drawn`` why it cannot be drawn."""
    try:
        fig = draw(*args)
    except NotDrawn as why:
        not_drawn[name] = str(why)
        return
    save(fig, out / name)
    drawn[name] = fig


def _text(sets: ResultSets, dirs, drawn, not_drawn, asv, asv_dir, benchmark, history) -> str:
    df = sets.frame
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sources = ([f"sweep folder(s) {', '.join(f'`{shown(d)}`' for d in dirs)}"] if dirs else []) + (
        [f"asv results `{asv_dir}`"] if asv_dir else []
    )
    parts = [
        REPORT_TITLES[0],
        f"Generated {now} from {' and '.join(sources)}. "
        "Predictions come from `softmax_core.model.cost`; "
        "times are medians with their 95% confidence interval in brackets; units are decimal SI "
        "(1 GB = 10⁹ bytes).",
    ]
    headline = headline_section(df) if not df.empty else ""
    if headline:
        parts += ["## What this hardware does", headline]
    notes = notes_section(sets.notes, df)
    if notes:
        parts += ["## Read this first", notes]
    if sets.environments:
        parts += ["## Where it ran", md.environment_section(sets.environments)]
    if not df.empty:
        parts += [
            "## Points measured",
            md.counts_section(df),
            "## The lecture's table",
            "The lecture's memory is the one array that defines each approach (the Jacobian, or "
            "the gradient); the implementation peak is every temporary this code holds at its "
            "worst moment. Points not run show their predicted values and why they were skipped.",
            md.lecture_section(df),
        ]
    if drawn or not_drawn:
        parts.append("## Plots")
    for name in drawn:
        if name == ASV_PLOT:
            parts += [
                "### asv benchmark across commits",
                f"![asv history]({name})",
                f"`{benchmark}` per commit, oldest to newest; bars: asv's 99% confidence interval; "
                "hollow: a result whose interval is wider than ±5% of it.",
            ]
            continue
        _, title, caption, section = PLOTS[name]
        caption = caption(df) if callable(caption) else caption
        parts += [f"### {title}", f"![{title}]({name})", caption, section(df) if section else ""]
    if not_drawn:
        parts += [
            "### Plots not drawn",
            "\n".join(f"- `{n}`: {why}" for n, why in not_drawn.items()),
        ]
    if not df.empty:
        parts += [
            "## Summary at the smallest batch",
            "FLOP/s and bytes/s are the cost model's FLOPs and traffic over the measured median; "
            "% of peak is against the sweep's probe of that machine.",
            md.summary_section(df),
            md.all_points_section(df),
        ]
    if asv is not None:
        parts += ["## asv", md.asv_section(asv, benchmark, asv_dir, history)]
    return "\n\n".join(p for p in parts if p) + "\n"


__all__ = [
    "make_report",
    "check_claim",
    "load_results",
    "load_asv_results",
    "asv_points",
    "pick_benchmark",
    "history_table",
    "throughput_table",
    "PLOT_FILES",
    "PLOTS",
    "NotDrawn",
]
