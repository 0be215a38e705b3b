"""What the terminal explorer shows, as a value: filters, picked models, workload.

:class:`BrowseState` holds the one :class:`knollm.query.filters.Filters` value (no second
filter) plus the compare selection and the workload typed into the compare view. It turns
itself into the equivalent ``knollm`` command lines (:meth:`BrowseState.commands`) and into
the site explorer's URL (:meth:`BrowseState.explorer_url`, the parameters ``readState`` in
``knollm/site/assets/knollm.js`` reads).

Standard library only (tested without Textual).
"""

from __future__ import annotations

import dataclasses
import shlex
from urllib.parse import urlencode

from knollm.query.cost import Workload, parse_count
from knollm.query.filters import Filters

__all__ = ["BrowseState", "SITE_SORT", "parse_workload"]

#: Filters sort key -> (site explorer column, direction). The site sorts by one column;
#: ``price`` (input + output) has no such column there, so it maps to the input price.
SITE_SORT: dict[str, tuple[str, str]] = {
    "name": ("name", "asc"),
    "provider": ("provider", "asc"),
    "context": ("ctx", "desc"),
    "output_price": ("out", "asc"),
    "price": ("in", "asc"),
}


def parse_workload(input_tokens: str, output_tokens: str, requests: str = "1") -> Workload:
    """A :class:`Workload` from the compare view's text fields (``2000``, ``1.5M``, ``10k``);
    ValueError naming the bad field."""
    vals = []
    for name, text in (("input", input_tokens), ("output", output_tokens), ("requests", requests)):
        try:
            vals.append(parse_count(text or "0"))
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return Workload(vals[0], vals[1], requests=vals[2] or 1)


def _num(v: float | int) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@dataclasses.dataclass
class BrowseState:
    """The explorer's state. ``filters.limit`` is ignored (the table shows every match)."""

    filters: Filters = dataclasses.field(default_factory=Filters)
    picked: list[str] = dataclasses.field(default_factory=list)
    input_tokens: str = "2000"
    output_tokens: str = "500"
    requests: str = "1"

    def update(self, **changes: object) -> Filters:
        """Replace filter fields (``text``, ``capabilities``, …); returns the new filters."""
        self.filters = self.filters.replace(**changes)
        return self.filters

    def toggle_pick(self, key: str) -> bool:
        """Pick or unpick a model for the compare view; True when it is now picked."""
        if key in self.picked:
            self.picked.remove(key)
            return False
        self.picked.append(key)
        return True

    def workload(self) -> Workload:
        return parse_workload(self.input_tokens, self.output_tokens, self.requests)

    # ------------------------------------------------------------------ as commands
    def filter_args(self) -> list[str]:
        """The ``knollm models search`` options for the filters (the same option names
        :func:`knollm.cli.filters.model_filters` defines)."""
        f = self.filters
        args: list[str] = []
        for p in f.providers:
            args += ["-p", p]
        for c in f.capabilities:
            args += ["-c", c]
        for m in f.modalities:
            args += ["--modality", m]
        for k in f.kinds:
            args += ["--kind", k]
        if f.min_context is not None:
            args += ["--min-context", str(f.min_context)]
        if f.max_input_price is not None:
            args += ["--max-input-price", _num(f.max_input_price)]
        if f.max_output_price is not None:
            args += ["--max-output-price", _num(f.max_output_price)]
        if f.free is True:
            args.append("--free")
        if f.paid:
            args.append("--paid")
        if f.open_weights:
            args.append("--open-weights")
        if f.include_deprecated:
            args.append("--include-deprecated")
        if f.sort != "name":
            args += ["--sort", f.sort]
        return args

    def search_argv(self) -> list[str]:
        text = [self.filters.text] if self.filters.text else []
        return ["knollm", "models", "search", *text, *self.filter_args(), "--limit", "0"]

    def compare_argv(self) -> list[str] | None:
        if not self.picked:
            return None
        return ["knollm", "compare", *self.picked, "--input", self.input_tokens or "0",
                "--output", self.output_tokens or "0"]

    def cost_argv(self) -> list[str] | None:
        if not self.picked:
            return None
        return ["knollm", "cost", *self.picked, "--input", self.input_tokens or "0",
                "--output", self.output_tokens or "0", "--requests", self.requests or "1"]

    def commands(self) -> list[str]:
        """The equivalent shell command lines: the search, then (with picked models) the
        compare and cost commands."""
        out = [self.search_argv(), self.compare_argv(), self.cost_argv()]
        return [shlex.join(a) for a in out if a]

    # ------------------------------------------------------------------ as the site's URL
    def explorer_params(self) -> dict[str, str]:
        """The site explorer's URL parameters (``FACET_DEFAULTS`` in knollm.js): ``s``, ``p``,
        ``cap``, ``mod``, ``ctx``, ``maxp`` (max input price), ``free``, ``paid``, ``ow``, ``dep``,
        ``kind``, ``sort``, ``dir``. What the explorer cannot express is listed by
        :meth:`url_gaps`."""
        f = self.filters
        q: dict[str, str] = {}
        if f.text:
            q["s"] = f.text
        if f.providers:
            q["p"] = ",".join(f.providers)
        if f.capabilities:
            q["cap"] = ",".join(f.capabilities)
        if f.modalities:
            q["mod"] = ",".join(f.modalities)
        if f.min_context:
            q["ctx"] = str(f.min_context)
        if f.max_input_price is not None:
            q["maxp"] = _num(f.max_input_price)
        if f.free is True:
            q["free"] = "1"
        if f.paid:
            q["paid"] = "1"
        if f.open_weights:
            q["ow"] = "1"
        if f.include_deprecated:
            q["dep"] = "1"
        if len(f.kinds) == 1:
            q["kind"] = f.kinds[0]
        if f.sort != "name":
            q["sort"], q["dir"] = SITE_SORT[f.sort]
        return q

    def url_gaps(self) -> list[str]:
        """Filters the site's explorer has no parameter for (left out of the URL)."""
        f = self.filters
        gaps = []
        if f.max_output_price is not None:
            gaps.append("max output price")
        if len(f.kinds) > 1:
            gaps.append("more than one kind")
        if f.sort == "price":
            gaps.append("sort by input+output price (the URL sorts by input price)")
        return gaps

    def explorer_url(self, site_url: str | None = None) -> str:
        """The explorer page's URL with this state (``site_url``: the site's root, e.g.
        ``$KNOLLM_SITE_URL``; without it a site-relative ``explorer/?…``)."""
        base = (site_url.rstrip("/") + "/") if site_url else ""
        qs = urlencode(self.explorer_params(), safe=",")
        return f"{base}explorer/" + (f"?{qs}" if qs else "")
