"""The SimCons study's report: Table 1 shape, paired differences with 95% intervals, verdicts
per claim of the paper, the lambda sweep as a Fig.-4-style PNG, all in one Markdown file.

Differences are paired by seed (the same seed gives both arms the same initialisation and
data order), and their 95% interval is Student's t over seeds. Verdicts use a margin of
``MARGIN`` Dice (0.5 points): an improvement *holds* when the interval lies above 0, *does
not hold* when it excludes an improvement of MARGIN or more, and otherwise *cannot be told*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.simcons_study import augmentations

MARGIN = 0.005
NON_INFERIORITY = 0.01  # "task Dice holds": no loss larger than 1 Dice point
SA_NAMES = {"none": "Baseline", "colorjitter": "ColorJitter", "randstainna": "RandStainNA",
            "fda": "FDA"}  # fmt: skip
COLUMNS = [
    ("paired_average", "paired Dice avg"),
    ("paired_minimum", "paired Dice min"),
    ("val_dice", "task Dice val"),
    ("test_dice", "task Dice test"),
    ("paired_task_dice", "task Dice paired set"),
]


@dataclass(frozen=True)
class Difference:
    """Mean paired difference over seeds and its 95% t interval (nan with < 2 seeds)."""

    mean: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, diffs: list[float]) -> Difference:
        values = np.asarray(diffs, float)
        n = values.size
        if n == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        if n < 2:
            return cls(float(values.mean()), math.nan, math.nan, 1)
        half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
        return cls(
            float(values.mean()), float(values.mean() - half), float(values.mean() + half), n
        )

    def text(self) -> str:
        return (
            f"{100 * self.mean:+.2f} [{100 * self.low:+.2f}, {100 * self.high:+.2f}] (n={self.n})"
        )


def verdict_improves(d: Difference) -> str:
    if d.n < 2 or math.isnan(d.low):
        return "cannot be told (fewer than 2 seeds)"
    if d.low > 0:
        return "holds"
    if d.high < MARGIN:
        return "does not hold"
    return "cannot be told"


def verdict_not_worse(d: Difference) -> str:
    if d.n < 2 or math.isnan(d.low):
        return "cannot be told (fewer than 2 seeds)"
    if d.low > -NON_INFERIORITY:
        return "holds"
    if d.high < -NON_INFERIORITY:
        return "does not hold"
    return "cannot be told"


def verdict_falls(d: Difference) -> str:
    if d.n < 2 or math.isnan(d.low):
        return "cannot be told (fewer than 2 seeds)"
    if d.high < 0:
        return "holds"
    if d.low > -MARGIN:
        return "does not hold"
    return "cannot be told"


def select(rows: list[dict], variant: str, sa: str, weight: float, overrides=None) -> dict:
    """Rows of one arm, by seed."""
    overrides = overrides or {}
    return {
        r["seed"]: r
        for r in rows
        if r["variant"] == variant
        and r["sa"] == sa
        and r["lambda"] == weight
        and (r.get("overrides") or {}) == overrides
    }


def paired(a: dict[int, dict], b: dict[int, dict], key: str) -> Difference:
    """``a - b`` of ``key`` over the seeds both arms have."""
    seeds = sorted(set(a) & set(b))
    return Difference.of([a[s][key] - b[s][key] for s in seeds])


def mean_std(arm: dict[int, dict], key: str) -> str:
    values = np.array([r[key] for r in arm.values() if r[key] is not None], float) * 100
    if values.size == 0:
        return "-"
    std = values.std(ddof=1) if values.size > 1 else 0.0
    return f"{values.mean():.2f} +/- {std:.2f}"


def table_lines(rows: list[dict], study: dict[str, Any]) -> list[str]:
    lam = study["table_lambda"]
    head = "| training | method | n | " + " | ".join(label for _, label in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for variant in study["variants"]:
        arms = [("Baseline", select(rows, variant, "none", 0.0))]
        for sa in augmentations(study, variant):
            arms.append((SA_NAMES[sa], select(rows, variant, sa, 0.0)))
            arms.append((f"{SA_NAMES[sa]} + SimCons (l={lam:g})", select(rows, variant, sa, lam)))
        for name, arm in arms:
            cells = " | ".join(mean_std(arm, key) for key, _ in COLUMNS)
            lines.append(f"| {variant} | {name} | {len(arm)} | {cells} |")
    return lines


def claim_lines(rows: list[dict], study: dict[str, Any]) -> list[str]:
    """One row per claim of the paper: the paired difference, its interval and the verdict."""
    lam = study["table_lambda"]
    lines = [
        "| training | claim | metric | difference, Dice points [95% CI] | verdict |",
        "|---|---|---|---|---|",
    ]
    for variant in study["variants"]:
        base = select(rows, variant, "none", 0.0)
        for sa in augmentations(study, variant):
            name = SA_NAMES[sa]
            plain, simcons = select(rows, variant, sa, 0.0), select(rows, variant, sa, lam)
            checks = [
                (f"{name} > baseline", "paired_average", plain, base, verdict_improves),
                (f"{name} > baseline", "paired_minimum", plain, base, verdict_improves),
                (f"{name}+SimCons > {name}", "paired_average", simcons, plain, verdict_improves),
                (f"{name}+SimCons > {name}", "paired_minimum", simcons, plain, verdict_improves),
                (f"{name}+SimCons task Dice holds vs baseline", "test_dice", simcons, base,
                 verdict_not_worse),
            ]  # fmt: skip
            for claim, key, a, b, verdict in checks:
                d = paired(a, b, key)
                lines.append(f"| {variant} | {claim} | {key} | {d.text()} | {verdict(d)} |")
    return lines


def sweep_lines(rows: list[dict], study: dict[str, Any]) -> list[str]:
    sweep = study["sweep"]
    arms = {w: select(rows, sweep["variant"], sweep["sa"], w) for w in sweep["lambdas"]}
    lines = ["| lambda | n | paired Dice avg | paired Dice min | task Dice test |",
             "|---|---|---|---|---|"]  # fmt: skip
    for w, arm in arms.items():
        cells = " | ".join(
            mean_std(arm, k) for k in ("paired_average", "paired_minimum", "test_dice")
        )
        lines.append(f"| {w:g} | {len(arm)} | {cells} |")
    low, high = min(arms), max(arms)
    mid = study["table_lambda"] if study["table_lambda"] in arms else low
    rising = paired(arms[high], arms[low], "paired_average")
    falling = paired(arms[high], arms[mid], "test_dice")
    lines += [
        "",
        "| claim | difference, Dice points [95% CI] | verdict |",
        "|---|---|---|",
        f"| paired Dice avg rises with lambda ({high:g} vs {low:g}) | {rising.text()} | "
        f"{verdict_improves(rising)} |",
        f"| task Dice falls beyond lambda {mid:g} ({high:g} vs {mid:g}) | {falling.text()} | "
        f"{verdict_falls(falling)} |",
    ]
    return lines


def ablation_lines(rows: list[dict], study: dict[str, Any]) -> list[str]:
    """What else was tried for SA+SimCons: each changed setting against the default."""
    sweep, lam = study["sweep"], study["table_lambda"]
    default = select(rows, sweep["variant"], sweep["sa"], lam)
    lines = ["| change | metric | difference vs default, Dice points [95% CI] |", "|---|---|---|"]
    for change in study["ablations"]:
        arm = select(rows, sweep["variant"], sweep["sa"], lam, change)
        name = ", ".join(f"{k}={v}" for k, v in change.items())
        for key in ("paired_average", "paired_minimum", "test_dice"):
            lines.append(f"| {name} | {key} | {paired(arm, default, key).text()} |")
    return lines


def plot_sweep(rows: list[dict], study: dict[str, Any], path: Path, title: str) -> None:
    """Fig.-4 shape: paired Dice and task Dice (mean +/- std over seeds) against lambda."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = study["sweep"]
    lambdas = list(sweep["lambdas"])
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    for key, label in (("paired_average", "scanner-paired Dice (avg)"),
                       ("test_dice", "task Dice (test)")):  # fmt: skip
        values = [[r[key] * 100 for r in select(rows, sweep["variant"], sweep["sa"], w).values()]
                  for w in lambdas]  # fmt: skip
        means = [np.mean(v) if v else np.nan for v in values]
        stds = [np.std(v, ddof=1) if len(v) > 1 else 0.0 for v in values]
        ax.errorbar(lambdas, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xlabel("consistency weight lambda")
    ax.set_ylabel("Dice (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def collapse_line(rows: list[dict]) -> str:
    """Runs that predict one class on the whole paired set agree across scanners by
    construction: their paired Dice says nothing about consistency."""
    collapsed = [r for r in rows if r.get("paired_classes_predicted", 2) < 2]
    return (
        f"{len(collapsed)} of {len(rows)} runs predict a single class on the whole paired set "
        "(paired Dice 1 by construction); read paired Dice together with task Dice."
    )


def convergence_line(rows: list[dict], rule: dict[str, Any]) -> str:
    """How many runs still had their best validation epoch late after the extensions."""
    late = [r for r in rows if r["best_epoch"] > (1 - rule["late_fraction"]) * r["epochs"]]
    epochs = [r["epochs"] for r in rows]
    return (
        f"Convergence: runs are extended by {rule['extend_epochs']} epochs while the best "
        f"validation epoch lies in the last {100 * rule['late_fraction']:g}% of the epochs run, "
        f"up to {rule['max_epochs']}; epochs run {min(epochs)}-{max(epochs)}. {len(late)} of "
        f"{len(rows)} runs still peaked late (may not have converged)."
    )


def scaled_down(study: dict[str, Any]) -> str:
    """What this study scales down from the paper, read from its own settings."""
    synth, train, rule = study["synth"], study["train"], study["convergence"]
    encoder = train["encoder"].replace("resnet", "ResNet")
    init = "ImageNet weights" if train.get("encoder_weights") else "random initialisation"
    paired = synth["n_paired_slides"] * synth["paired_samples"]
    return (
        "What this study scales down from the paper (Table 1 / Fig. 4 are at 1024 px, "
        "DeepLabV3+ ResNet34, 150 epochs, ImageNet weights, real tissue): synthetic tissue at "
        f"{synth['patch_mpp']:g} um/px, {synth['patch_px']} px tiles trained on {train['size']} "
        f"px crops, a {encoder} encoder from {init}, {train['epochs']} epochs extended up to "
        f"{rule['max_epochs']} while still improving (best epoch on validation), "
        f"{synth['n_train']} labelled tiles, {paired} paired samples x 5 scanners. The "
        "paper-scale settings are `pipelines/table1.yaml` (`--preset paper`), for a GPU; no "
        "GPU was lent to the session that wrote this tool, so that preset has not been run."
    )


def provenance_lines(header: dict, n_rows: int) -> list[str]:
    """The smoke warning (for the smoke preset), command, commit, machine and cache use."""
    lines = []
    if header["preset"] == "smoke":
        lines += [
            "> **Smoke run.** This file was written by the `smoke` preset, a toy that checks",
            "> every stage of the study end to end in a few minutes. Its numbers mean",
            "> **nothing** about SimCons; the verdicts below are placeholders of the right",
            "> shape. The real study is `python benchmarks/bench_simcons.py --preset cpu --jobs 2`",
            "> (estimated at about 2 h on a quiet 2-core machine; not run yet).",
            "",
        ]
    return lines + [
        f"- command: `{header['command']}`",
        f"- commit: `{header['commit']}`; code version (hash of scorpion_build and the study "
        f"module): `{header['code']}`",
        f"- machine: {header['machine']}",
        f"- date: {header['date']}; wall time {header['wall_s']:.0f} s; "
        f"{header['cached']} of {n_rows} runs read from the cache (same settings and code)",
        f"- preset: `{header['preset']}`; paired set: {header['paired']}",
    ]


def write_markdown(path: Path, rows: list[dict], study: dict[str, Any], header: dict) -> None:
    """The whole report: provenance, Table 1 shape, claims, lambda sweep, ablations."""
    smoke = header["preset"] == "smoke"
    figure = path.with_name(path.stem + "_lambda.png")
    sweep = study["sweep"]
    title = f"{SA_NAMES[sweep['sa']]}, training '{sweep['variant']}', {header['preset']} preset"
    plot_sweep(rows, study, figure, ("SMOKE RUN, numbers mean nothing\n" if smoke else "") + title)
    lines = [
        "# SimCons study: Table 1 and Fig. 4 of the SCORPION paper, with statistics",
        "",
        *provenance_lines(header, len(rows)),
        "",
        scaled_down(study),
        "",
        "## Table 1 shape (mean +/- std over seeds, Dice in %)",
        "",
        *table_lines(rows, study),
        "",
        convergence_line(rows, study["convergence"]),
        "",
        collapse_line(rows),
        "",
        "## Claims: paired differences across seeds, 95% t intervals",
        "",
        f"Improvement claims hold when the interval lies above 0 and do not hold when it "
        f"excludes a gain of {100 * MARGIN:g} points; 'task Dice holds' allows a loss of up to "
        f"{100 * NON_INFERIORITY:g} point.",
        "",
        *claim_lines(rows, study),
        "",
        f"## Lambda sweep (Fig. 4 shape; {title})",
        "",
        f"![lambda sweep]({figure.name})",
        "",
        *sweep_lines(rows, study),
        "",
        "## What else was tried (SA+SimCons, settings changed one at a time)",
        "",
        *ablation_lines(rows, study),
        "",
        "## Study settings",
        "",
        "```json",
        header["study_json"],
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
