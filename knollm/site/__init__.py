"""Knollm's static site: an MkDocs plugin plus plain rendering functions.

* :mod:`knollm.site.render` – Markdown/HTML for generated pages (providers, cross-provider
  models, matrices); every data string goes through :func:`html.escape`.
* :mod:`knollm.site.data` – the machine-readable outputs (compact explorer index, CSV,
  detail chunks) as bytes.
* :mod:`knollm.site.plugin` / :mod:`knollm.site.config` – the MkDocs plugin that wires
  them in (``plugins: [knollm]``).
* ``assets/knollm.js`` / ``assets/knollm.css`` – the project's own JavaScript and CSS
  (explorer, calculator, model detail view, SVG chart); no CDN.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"

__all__ = ["ASSETS_DIR"]
