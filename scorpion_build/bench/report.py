"""Benchmark outputs: report.json, pairs.csv, samples.csv, a Markdown table, two figures.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` (Agg), never through pyplot's
global state, so this works headless and from any thread.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from scorpion_build.bench.predictions import MISSING, Predictions
from scorpion_build.bench.sources import PatchSource
from scorpion_build.files import write_text_atomic
from scorpion_build.metrics import ConsistencySummary
from scorpion_build.palette import class_legend, overlay

MONTAGE_GAP_PX = 6


def write_outputs(
    report: dict[str, Any],
    summary: ConsistencySummary,
    source: PatchSource,
    predictions: Predictions,
    out_dir: Path,
    model_name: str,
    n_worst: int,
) -> dict[str, Path]:
    """Write every benchmark output into ``out_dir``; returns ``{kind: path}``."""
    files = {
        "report": write_json(report, out_dir / "report.json"),
        "markdown": out_dir / "report.md",
        "pairs": out_dir / "pairs.csv",
        "samples": out_dir / "samples.csv",
        "heatmap": plot_heatmap(summary, out_dir / "pairs_heatmap.png"),
    }
    files["markdown"].write_text(markdown_report(report, model_name))
    pairs_table(summary).to_csv(files["pairs"], index=False)
    samples_table(summary, source.sample_ids).to_csv(files["samples"], index=False)
    worst = summary.worst_samples(n_worst)
    montage = plot_montage(summary, source, predictions, worst, out_dir / "worst_samples.png")
    if montage is not None:
        files["montage"] = montage
    return files


def write_json(data: dict[str, Any], path: Path) -> Path:
    """Write atomically: a reader never sees a half-written report."""
    return write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def pairs_table(summary: ConsistencySummary) -> pd.DataFrame:
    """One row per scanner pair: dice, its interval, sample count, per-class Dice."""
    rows = []
    intervals = pair_intervals(summary)
    for p, (i, j) in enumerate(summary.pairs):
        low, high = intervals[(i, j)]
        row = {
            "a": summary.scanners[i],
            "b": summary.scanners[j],
            "dice": summary.pair_dice[p],
            "ci_low": low,
            "ci_high": high,
            "n": int(summary.pair_n[p]),
        }
        row.update(
            {f"dice_{c}": summary.pair_class_dice[p, k] for k, c in enumerate(summary.classes)}
        )
        rows.append(row)
    return pd.DataFrame(rows)


def samples_table(summary: ConsistencySummary, sample_ids: Sequence[str]) -> pd.DataFrame:
    """One row per sample: its Dice for every pair, its worst pair, and whether it failed."""
    table = pd.DataFrame(
        summary.sample_dice, columns=[summary.pair_name(p) for p in range(len(summary.pairs))]
    )
    table.insert(0, "sample", list(sample_ids))
    table["worst_pair"] = [summary.pair_name(p) if p >= 0 else "" for p in summary.worst_pair]
    table["worst_dice"] = summary.worst_dice
    table["failed"] = (summary.worst_pair >= 0) & (summary.worst_dice < summary.threshold)
    return table


def fmt_number(x: float | None, digits: int = 3) -> str:
    """A Dice-like number for people: fixed digits, ``-`` when there is none."""
    return "-" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def markdown_report(report: dict[str, Any], model_name: str) -> str:
    """The paper's table (Dice per scanner pair, average, minimum) plus per-class and task Dice."""
    pairs = report["pairwise"]
    head = ["Model", *[f"{p['a']}-{p['b']}" for p in pairs], "Average", "Minimum"]
    row = [
        model_name,
        *[fmt_number(p["dice"]) for p in pairs],
        fmt_number(report["average"]),
        fmt_number(report["minimum"]),
    ]
    interval_row = [
        f"{int(report['confidence'] * 100)}% interval",
        *[fmt_interval(p["ci"]) for p in pairs],
        fmt_interval(report["average_ci"]),
        fmt_interval(report["minimum_ci"]),
    ]
    lines = [
        f"# Cross-scanner consistency: {model_name}",
        "",
        f"Dice between predictions on the same tissue from two scanners, per sample, averaged over "
        f"{len(report['classes'])} classes then over samples ({report['n_samples']} samples, "
        f"{len(report['scanners'])} scanners).",
        "",
        _table(head, [row, interval_row]),
        "",
        f"{int(report['confidence'] * 100)}% bootstrap intervals "
        f"({report['n_bootstrap']} resamples): average {fmt_interval(report['average_ci'])}, "
        f"minimum {fmt_interval(report['minimum_ci'])}.",
        "",
        f"Failure rate (worst pair Dice < {report['failure_threshold']}): "
        f"{fmt_number(report['failure_rate'])} {fmt_interval(report['failure_rate_ci'])}.",
        "",
        "## Per class",
        "",
        _table(
            ["Class", "Average", "Minimum"],
            [
                [c, fmt_number(v["average"]), fmt_number(v["minimum"])]
                for c, v in report["per_class"].items()
            ],
        ),
    ]
    lines += _task_lines(report)
    if report.get("missing"):
        lines += [
            "",
            f"{len(report['missing'])} (sample, scanner) patches missing; see report.json.",
        ]
    return "\n".join(lines) + "\n"


def _task_lines(report: dict[str, Any]) -> list[str]:
    """The task Dice section (with ``--labels``), or nothing."""
    task = report.get("task_dice")
    if not task:
        return []
    rows = [
        [
            s,
            fmt_number(v["dice"]),
            str(v["n"]),
            *[fmt_number(v["per_class"][c]) for c in report["classes"]],
        ]
        for s, v in task["per_scanner"].items()
    ]
    return [
        "",
        "## Task Dice against ground truth",
        "",
        _table(["Scanner", "Dice", "n", *report["classes"]], rows),
    ]


def fmt_interval(ci: Sequence[float | None], digits: int = 3) -> str:
    return f"[{fmt_number(ci[0], digits)}, {fmt_number(ci[1], digits)}]"


def _table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pair_matrix(summary: ConsistencySummary) -> np.ndarray:
    """Symmetric ``(S, S)`` Dice matrix; 1.0 on the diagonal, NaN for a pair with no samples."""
    n = len(summary.scanners)
    matrix = np.eye(n)
    for p, (i, j) in enumerate(summary.pairs):
        matrix[i, j] = matrix[j, i] = summary.pair_dice[p]
    return matrix


def pair_intervals(summary: ConsistencySummary) -> dict[tuple[int, int], tuple[float, float]]:
    """Bootstrap interval of each scanner pair's Dice, keyed by the pair's scanner indices."""
    return {
        (i, j): summary.ci.get(f"pair:{summary.pair_name(p)}", (np.nan, np.nan))
        for p, (i, j) in enumerate(summary.pairs)
    }


def plot_heatmap(summary: ConsistencySummary, path: Path) -> Path:
    """Scanner-by-scanner Dice heatmap with the values and their bootstrap intervals written
    in the cells."""
    matrix = pair_matrix(summary)
    n = len(summary.scanners)
    fig = Figure(figsize=(1.5 * n + 2.0, 1.2 * n + 1.4), dpi=120)
    ax = fig.add_subplot()
    finite = matrix[np.isfinite(matrix)]
    low = min(float(finite.min()), 0.9) if finite.size else 0.0
    image = ax.imshow(matrix, cmap="viridis", vmin=low, vmax=1.0)
    intervals = pair_intervals(summary)
    for i in range(n):
        for j in range(n):
            text = fmt_number(matrix[i, j]) if i != j else ""
            ci = intervals.get((min(i, j), max(i, j)))
            if text != "-" and ci is not None and np.isfinite(ci).all():
                text += f"\n[{ci[0]:.2f}, {ci[1]:.2f}]"  # the interval beside every value
            colour = (
                "white" if np.isfinite(matrix[i, j]) and matrix[i, j] < (low + 1) / 2 else "black"
            )
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
    ax.set_xticks(range(n), summary.scanners, rotation=45, ha="right")
    ax.set_yticks(range(n), summary.scanners)
    ax.set_title(
        f"Pairwise Dice (average {fmt_number(summary.average)}, min {fmt_number(summary.minimum)})"
    )
    fig.colorbar(image, ax=ax, label="Dice")
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_montage(
    summary: ConsistencySummary,
    source: PatchSource,
    predictions: Predictions,
    samples: Sequence[int],
    path: Path,
    tile_px: int = 256,
) -> Path | None:
    """The given samples (rows) x scanners (columns): each patch with its prediction overlaid.

    Row labels give the sample id, its worst pair and that pair's Dice, so a reader can see
    what disagreement looks like. Returns None when there is nothing to show.
    """
    if not samples:
        return None
    n_scanners = len(summary.scanners)
    step = tile_px + MONTAGE_GAP_PX
    # one mosaic image in one Axes: drawing 30 separate Axes costs seconds per figure
    mosaic = np.full((len(samples) * step, n_scanners * step, 3), 255, np.uint8)
    absent = []
    for r, n in enumerate(samples):
        labels = predictions.read(n, n + 1)[0]
        for s in range(n_scanners):
            tile = mosaic[r * step : r * step + tile_px, s * step : s * step + tile_px]
            if not source.valid[n, s] or not (labels[s] != MISSING).any():
                tile[:] = 200
                absent.append((r, s))
                continue
            size = (tile_px, tile_px)
            image = cv2.resize(source.read(n, s), size, interpolation=cv2.INTER_AREA)
            label = cv2.resize(labels[s], size, interpolation=cv2.INTER_NEAREST)
            tile[:] = overlay(image, label, MISSING)
    fig = Figure(figsize=(1.9 * n_scanners + 2.2, 1.9 * len(samples) + 1.0), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(mosaic)
    for r, s in absent:
        ax.text((s + 0.5) * step, (r + 0.5) * step, "missing", ha="center", va="center")
    ax.xaxis.tick_top()
    ax.set_xticks([(s + 0.5) * step for s in range(n_scanners)], summary.scanners)
    row_names = []
    for n in samples:
        p = summary.worst_pair[n]
        pair = summary.pair_name(p) if p >= 0 else "-"
        row_names.append(
            f"{source.sample_ids[n]}\nworst {pair}\nDice {fmt_number(summary.worst_dice[n])}"
        )
    ax.set_yticks([(r + 0.5) * step for r in range(len(samples))], row_names, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    legend = class_legend(summary.classes)
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(legend))
    ax.set_title("Least consistent samples, prediction overlaid (background uncoloured)")
    fig.tight_layout()
    fig.savefig(path)
    return path
