"""A response cache for :mod:`knollm.client` (opt-in per call, per alias, or globally).

:mod:`knollm.client_cache.store` is the SQLite store (:class:`ResponseCache`);
:mod:`knollm.client_cache.wrap` puts it in front of a client (:class:`CachedClient`,
:class:`AsyncCachedClient`); :mod:`knollm.client_cache.cli` is ``knollm cache``.
"""

from knollm.client_cache.store import CacheEntry, CacheWarning, ResponseCache, cache_key, default_cache_path
from knollm.client_cache.wrap import AsyncCachedClient, CachedClient, CachedResult, CacheHook, CachePolicy, CacheRequest

__all__ = ["ResponseCache", "CacheEntry", "CacheWarning", "cache_key", "default_cache_path", "CachedClient",
           "AsyncCachedClient", "CachedResult", "CachePolicy", "CacheHook", "CacheRequest"]
