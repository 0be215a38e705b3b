"""Stage 2 — ask the catalog.

The Python API (:class:`knollm.query.api.Catalog`), the CLI's compact index, the one
:class:`~knollm.query.filters.Filters` value, the cost formula and ``recommend``. Reads
what :mod:`knollm.catalog` built; products (cli, site, client, …) read from here.
"""
