"""Static HTML report of a run: ``data`` gathers each neuron's view from a store and an explanations file,
``html`` writes the site (file://, no server, no CDN) from ``index_page`` and ``neuron_page``, with the charts
in ``svg`` and the escaping and formats they share in ``markup``; ``build`` ties them to a run directory."""

from .build import build_report, report_is_current

__all__ = ["build_report", "report_is_current"]
