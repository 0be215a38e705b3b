"""Stage 1 — build the catalog.

Raw provider dumps and the registries go in; one validated, sourced catalog comes out.
Data flows one way through these modules::

    readers  ->  translate (one translator per odd source)  ->  build (merge, joins,
    precedence)  ->  schema (validation)          registries, identity, history feed build

Nothing here imports from :mod:`knollm.query` or any product (cli, site, fetch, …).
"""
