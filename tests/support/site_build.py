"""One full site build on the real dumps per test session (shared by the slow site tests)."""

from __future__ import annotations

from pathlib import Path

_BUILT: dict[str, tuple[Path, dict, dict]] = {}


def full_site(tmp_root: Path, dumps: Path) -> tuple[Path, dict, dict]:
    """``(site_dir, catalog, build result)`` for ``dumps``, built once per session."""
    key = str(dumps)
    if key not in _BUILT:
        from knollm.query.cache import cached_catalog
        from knollm.cli.cmd_build import build_site

        root = Path(__file__).resolve().parents[2]
        cat = cached_catalog(dumps)
        res = build_site(dumps, tmp_root / "site", root / "mkdocs.yml", catalog=cat)
        _BUILT[key] = (Path(res["site_dir"]), cat, res)
    return _BUILT[key]
