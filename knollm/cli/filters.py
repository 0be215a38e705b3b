"""Options shared by the data commands: ``--dumps``, the model filters, token counts, and
loading the (cached) index / catalog with a rebuild notice.

``model_filters`` adds the filter options used by ``models search``, ``cost``, ``export``
and ``recommend`` and passes them to the command as one
:class:`knollm.query.filters.Filters` value (so the CLI and the Python API share one set
of semantics, implemented in :mod:`knollm.query.filters`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from knollm.vocab import CAPABILITIES, KINDS, MODALITIES, SORT_KEYS

__all__ = [
    "CAPABILITY_CHOICES",
    "dumps_option",
    "model_filters",
    "CountType",
    "PriceType",
    "SecondsType",
    "FiniteRange",
    "load_index",
    "load_cached_catalog",
    "rebuild_notice",
    "complete_provider",
    "complete_model",
]

# from the one vocabulary (stdlib only, so option parsing never imports pydantic)
CAPABILITY_CHOICES = CAPABILITIES
MODALITY_CHOICES = MODALITIES
KIND_CHOICES = KINDS
SORT_CHOICES = SORT_KEYS


def _default_dumps() -> str:
    return os.environ.get("KNOLLM_DUMPS") or "work/model_catalog"


def check_dumps(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A ``--dumps`` (or ``$KNOLLM_DUMPS``) that was given must exist: a usage error (exit 2)
    instead of a silent registries-only catalog. The default may be missing."""
    from click.core import ParameterSource

    if value is None or os.path.isdir(value):
        return value
    src = ctx.get_parameter_source(param.name) if param.name else None
    if src in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
        where = "$KNOLLM_DUMPS" if src is ParameterSource.ENVIRONMENT else "--dumps"
        raise click.BadParameter(f"{value}: no such directory ({where}; omit it to use the registries only)",
                                 ctx, param)
    return value


def dumps_option(f: Callable) -> Callable:
    """``--dumps DIR`` (env ``KNOLLM_DUMPS``; default ``work/model_catalog``); a given directory
    must exist (:func:`check_dumps`)."""
    return click.option(
        "--dumps", type=click.Path(file_okay=False), envvar="KNOLLM_DUMPS",
        default="work/model_catalog", show_default=True, callback=check_dumps,
        help="Directory of models_<provider>.json dumps (env KNOLLM_DUMPS). The default may be missing: "
             "registries only.",
    )(f)


class CountType(click.ParamType):
    """A token / request count: ``1500``, ``200k``, ``1.5M`` (via :func:`knollm.query.cost.parse_count`)."""

    name = "count"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from knollm.query.cost import parse_count

        try:
            return parse_count(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class PriceType(click.ParamType):
    name = "usd"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            v = float(value) if isinstance(value, float) else float(str(value).lstrip("$"))
        except ValueError:
            self.fail(f"not a price: {value!r} (USD, e.g. 0.5)", param, ctx)
        if not math.isfinite(v):  # nan compares false with every price: it would filter nothing
            self.fail(f"not a price: {value!r} (a finite USD amount, e.g. 0.5)", param, ctx)
        if v < 0:
            self.fail("must be >= 0", param, ctx)
        return v


class SecondsType(click.ParamType):
    """A duration in seconds: a finite number above zero (``nan`` and ``inf`` are refused:
    a nan timeout or time-to-live compares false with every clock reading)."""

    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        import math

        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"not a number of seconds: {value!r}", param, ctx)
        if not math.isfinite(v) or v <= 0:
            self.fail(f"must be a finite number of seconds above 0, not {value!r}", param, ctx)
        return v


class FiniteRange(click.FloatRange):
    """``click.FloatRange`` without ``nan`` and ``inf`` (``nan`` passes FloatRange's bounds:
    it compares false with both)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


def _split(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


def complete_provider(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        idx = load_index(ctx.params.get("dumps") or _default_dumps(), quiet=True)
    except Exception:  # completion must never fail loudly
        return []
    return [p["id"] for p in idx.providers if p["id"].startswith(incomplete)]


def complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    try:
        idx = load_index(ctx.params.get("dumps") or _default_dumps(), quiet=True)
    except Exception:
        return []
    from knollm.query.index import KEY

    return [r[KEY] for r in idx.rows if r[KEY].startswith(incomplete)][:200]


def _caps_callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    caps = _split(value)
    for c in caps:
        if c not in CAPABILITY_CHOICES:
            raise click.BadParameter(f"{c!r} is not one of {', '.join(CAPABILITY_CHOICES)}", ctx, param)
    return caps


def model_filters(f: Callable | None = None, *, limit: int | None = 25, sort: str | None = "relevance") -> Callable:
    """Add the model filter options; the command receives ``filters`` (a :class:`Filters`).
    ``sort=None``: no ``--sort`` option (the command has its own order)."""

    def deco(fn: Callable) -> Callable:
        opts = [
            click.option("--provider", "-p", "providers", multiple=True, shell_complete=complete_provider,
                         help="Only this provider (repeatable, or comma-separated)."),
            click.option("--capability", "-c", "capabilities", multiple=True, callback=_caps_callback,
                         metavar="|".join(CAPABILITY_CHOICES[:3]) + "|…",
                         help=f"Required capability, known true (repeatable): {', '.join(CAPABILITY_CHOICES)}."),
            click.option("--modality", "modalities", multiple=True,
                         shell_complete=lambda c, p, inc: [m for m in MODALITY_CHOICES if m.startswith(inc)],
                         help=f"Required input or output modality (repeatable): {', '.join(MODALITY_CHOICES)}, …"),
            click.option("--kind", "kinds", multiple=True, type=click.Choice(KIND_CHOICES),
                         help="Only models of this kind (repeatable)."),
            click.option("--min-context", type=CountType(), default=None, help="Minimum context window (e.g. 128k)."),
            click.option("--max-input-price", type=PriceType(), default=None, help="Max USD per 1M input tokens."),
            click.option("--max-output-price", type=PriceType(), default=None, help="Max USD per 1M output tokens."),
            click.option("--free", is_flag=True, default=False, help="Only free models."),
            click.option("--paid", is_flag=True, default=False,
                         help="Only paid offers (a known price above $0: free tiers and unpriced models left out)."),
            click.option("--open-weights", is_flag=True, default=False, help="Only open-weights models."),
            click.option("--include-deprecated", is_flag=True, help="Include deprecated models."),
        ]
        if sort is not None:
            opts.append(click.option("--sort", type=click.Choice(SORT_CHOICES), default=sort, show_default=True,
                                     help="Sort order (price: input+output, unknown last; relevance: exact "
                                          "id/name/canonical-id matches first, first-party offers next, "
                                          "deprecated last)."))
        opts += [
            click.option("--limit", "-n", type=click.IntRange(min=0), default=limit, show_default=True,
                         help="At most N rows (0: all)."),
        ]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any):
            from knollm.query.filters import Filters

            free, paid = kw.pop("free"), kw.pop("paid")
            if free and paid:
                raise click.UsageError("--free and --paid are mutually exclusive")
            kw["filters"] = Filters(
                providers=_split(kw.pop("providers")),
                capabilities=kw.pop("capabilities"),
                modalities=_split(kw.pop("modalities")),
                kinds=kw.pop("kinds"),
                min_context=kw.pop("min_context"),
                max_input_price=kw.pop("max_input_price"),
                max_output_price=kw.pop("max_output_price"),
                free=True if free else None,
                open_weights=True if kw.pop("open_weights") else None,
                include_deprecated=kw.pop("include_deprecated"),
                paid=paid,
                sort=kw.pop("sort") if sort is not None else "name",
                limit=kw.pop("limit") or None,
            )
            return fn(*args, **kw)

        for o in reversed(opts):
            wrapper = o(wrapper)
        return wrapper

    return deco(f) if f is not None else deco


# ---------------------------------------------------------------------------- loading
class _Spinner:
    """Elapsed-time indicator on stderr while the catalog builds (only on a terminal)."""

    FRAMES = "|/-\\"

    def __init__(self) -> None:
        import threading

        self._stop = threading.Event()
        self._thread: Any = None

    def start(self) -> None:
        import threading
        import time

        t0 = time.monotonic()

        def run() -> None:
            i = 0
            while not self._stop.wait(0.1):
                sys.stderr.write(f"\r{self.FRAMES[i % 4]} building… {time.monotonic() - t0:4.1f}s")
                sys.stderr.flush()
                i += 1
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _stderr_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class rebuild_notice:  # noqa: N801 - used as a context manager
    """``with rebuild_notice(dumps) as on_build:`` - pass ``on_build`` to the cache; when a
    rebuild happens it says so on stderr (plus a spinner on a terminal)."""

    def __init__(self, dumps: str | None, quiet: bool = False) -> None:
        self.dumps = dumps
        self.quiet = quiet
        self.spinner: _Spinner | None = None
        self.built = False

    def __call__(self) -> None:
        self.built = True
        if self.quiet:
            return
        src = f"{self.dumps}" if self.dumps is not None and os.path.isdir(self.dumps) else "no dumps"
        click.echo(f"knollm: building the catalog ({src} + registries; inputs changed or first run) - "
                   "cached for next time", err=True)
        if _stderr_tty():
            self.spinner = _Spinner()
            self.spinner.start()

    def __enter__(self) -> rebuild_notice:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.spinner is not None:
            self.spinner.stop()


def load_index(dumps: str | None, *, quiet: bool = False):
    """The cached :class:`knollm.query.index.Index` (fast path: no pydantic / registries)."""
    from knollm.query.cache import cached_index
    from knollm.query.index import Index

    import gc

    with rebuild_notice(dumps, quiet) as note:
        idx = Index(cached_index(dumps, on_build=note))
    # a short-lived CLI process: keep the cyclic GC from re-scanning ~10^5 acyclic tuples
    gc.freeze()
    return idx


def load_cached_catalog(dumps: str | None, *, quiet: bool = False):
    """The cached full :class:`knollm.query.api.Catalog` built from ``dumps`` (with a rebuild notice)."""
    from knollm.query.cache import cached_catalog
    from knollm.query.api import Catalog

    with rebuild_notice(dumps, quiet) as note:
        return Catalog(cached_catalog(dumps, on_build=note))
