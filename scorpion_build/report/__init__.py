"""Static HTML report of a build: summary, registration QC, alignment, analysis, benchmark."""

from scorpion_build.report.html import render_report

__all__ = ["render_report"]
