"""Static HTML report of a run: ``data`` gathers each neuron's view from a store and an explanations file,
``html`` renders the site (file://, no server, no CDN), ``build`` ties them to a run directory."""

from .build import build_report, report_is_current

__all__ = ["build_report", "report_is_current"]
