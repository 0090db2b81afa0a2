"""The side-by-side comparison's output: its Markdown table and its files (sidebyside.md and
sidebyside.json)."""

from __future__ import annotations

import json
from pathlib import Path

from ..fileio import atomic_write_text
from ..units import si

#: The first line of sidebyside.md.
TITLE = "# softmax-bench side by side"
#: The files :func:`write` writes, and how each begins: it replaces only files it wrote.
OWN_FILES = {
    "sidebyside.json": lambda head: head.startswith('{\n  "device": '),
    "sidebyside.md": lambda head: head.startswith(TITLE),
}


def _t(seconds) -> str:
    return si(seconds if seconds is not None else float("nan"), "s")


def markdown(result: dict) -> str:
    """The comparison as markdown: one table per workload and the notes that read it."""
    p = result["probe"]
    lines = [
        TITLE,
        "",
        f"Device: {result['device']}; libraries: {', '.join(result['backends'])}. Probe: GEMM "
        f"{si(p['gemm_gflops'] * 1e9, 'FLOP/s')}, copy {si(p['copy_gbps'] * 1e9, 'B/s')}. "
        "Latency of one tiny operation in a chain: "
        + ", ".join(f"{k} {_t(v)}" for k, v in result["latency_s"].items())
        + ".",
    ]
    if result.get("torch_skipped"):
        lines.append(f"torch variants skipped: {result['torch_skipped']}")
    for w in result["workloads"]:
        data = " (synthetic data)" if w["synthetic"] and "synthetic" not in w["title"] else ""
        lines += [
            "",
            f"## {w['title']}{data}",
            "",
            f"{w['steps']} step(s) a call; per step {si(w['flops'] / w['steps'], 'FLOP')} and "
            f"{si(w['traffic_bytes'] / w['steps'], 'B')} of traffic (cost model); "
            f"softmax-bench's static count: {w['static_launches_per_step']:.2f} operations a "
            f"step; results compared after {w['compared_steps']} step(s).",
            "",
            "| variant | library | median [95% CI] | n | stable | per step | ops/step (how) | "
            "bound/step (by) | x bound | vs plain (per round) | agrees |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in w["variants"]:
            if r["status"] != "ok":
                lines.append(f"| {r['variant']} | | skipped: {r['reason']} | | | | | | | | |")
                continue
            ci, ops = r.get("vs_baseline_ci"), r["launches_per_step"]
            vs = (
                "n/a"
                if r.get("vs_baseline") is None
                else f"{r['vs_baseline']:.2f}x [{ci[0]:.2f}, {ci[1]:.2f}] of {r['baseline']}"
            )
            lines.append(
                f"| {r['variant']} | {r['library']} | {_t(r['time_median_s'])} "
                f"[{_t(r['time_ci_low_s'])}, {_t(r['time_ci_high_s'])}] | "
                f"{r['repeats']}x{r['loops']} | {'yes' if r['stable'] else 'NO'} | "
                f"{_t(r['per_step_s'])} | {'n/a' if ops is None else f'{ops:.1f}'} "
                f"({r['launches_how']}) | "
                f"{_t(r['bound_s'])} ({r['bound_by']}) | {r['over_bound']:.1f} | {vs} | "
                f"{'yes' if r['agrees'] else 'NO'} ({r['max_rel_diff']:.1e}) |"
            )
    lines += [
        "",
        "Bound per step: max(ops x latency, traffic / copy bandwidth, FLOPs / GEMM rate). Ops: "
        "on a GPU the kernels, copies and fills torch's profiler saw; on a CPU, which launches "
        "nothing, the aten operators torch dispatched (views included); static: softmax-bench's "
        "code path (STEP_OPS, GRAD_OPS). vs plain: the median of per-round ratios to the plain "
        "code on the same library (hand-written NumPy, hand-written PyTorch), with its 95% CI.",
        "",
    ]
    return "\n".join(lines)


def write(result: dict, out_dir) -> Path:
    """``out_dir/sidebyside.json`` and ``sidebyside.md``; returns the markdown's path."""
    out = Path(out_dir)
    atomic_write_text(out / "sidebyside.json", json.dumps(result, indent=2, default=str) + "\n")
    atomic_write_text(out / "sidebyside.md", markdown(result))
    return out / "sidebyside.md"


__all__ = ["markdown", "write", "OWN_FILES", "TITLE"]
