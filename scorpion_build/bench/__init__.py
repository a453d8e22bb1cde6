"""Parts of ``scorpion-build benchmark``: data sources, prediction stores, inference, report.

:mod:`scorpion_build.benchmark` puts them together; the numbers live in
:mod:`scorpion_build.metrics`.
"""
