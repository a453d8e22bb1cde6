"""Paired and unpaired analysis of a build's patches (input level and feature level) and the
figures of the HTML report (SCORPION paper, Figs. 1 and 2)."""

from __future__ import annotations

from typing import Any

from scorpion_build.analysis.stats import channel_stats, paired_deviations

__all__ = ["analyze_build", "channel_stats", "paired_deviations"]


def __getattr__(name: str) -> Any:
    # analyze_build pulls in torch and matplotlib; the statistics alone should not
    if name == "analyze_build":
        from scorpion_build.analysis.run import analyze_build

        return analyze_build
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
