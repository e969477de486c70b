"""The study report: a self-contained HTML page with scaling figures, fits and run tables."""

from ecgscale.report.html import render_report

__all__ = ["render_report"]
