"""``knollm local scan``: models served on this machine (Ollama, OpenAI-compatible servers).

* Ollama (``/api/tags``, ``/api/show``, ``/api/ps``): parameter size, quantization, family,
  native context (``model_info["<arch>.context_length"]``), effective context (``num_ctx``
  in the model's parameters), capabilities where reported, size on disk, memory in use when
  loaded. The context window is ``num_ctx`` when the Modelfile sets it, else the native one;
  ``/api/ps``'s ``context_length`` is only the context the model is loaded with right now
  (whatever the last request asked for), kept as ``loaded_context`` for information.
* OpenAI-compatible servers (``/v1/models``: vLLM ``max_model_len``, llama.cpp ``meta``,
  LM Studio): id, context where reported.

Ollama *cloud* models (Ollama >= 0.12 lists them with ``remote_host`` / ``remote_model``;
names ending ``-cloud`` / ``:cloud``) are recorded with ``local = false``, their remote host
and no memory estimate: their prompts leave the machine, so no local role uses them.

Scanned models become catalog-shaped model dicts with provider ``ollama`` or ``local``,
price 0 and every value's source ``local@<host>``. The scan is stored in
``$KNOLLM_HOME/local_models.json`` (default: the platform user data dir).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_HOSTS", "scan", "scan_host", "store_path", "save_scan", "load_scan", "machine_memory",
           "memory_estimate", "is_cloud_model"]

#: where local servers listen by default: (kind, URL)
DEFAULT_HOSTS: tuple[tuple[str, str], ...] = (
    ("ollama", "http://localhost:11434"),
    ("openai", "http://localhost:1234"),   # LM Studio
    ("openai", "http://localhost:8080"),   # llama.cpp server
    ("openai", "http://localhost:8000"),   # vLLM
)
_SIZE_RE = re.compile(r"^\s*([\d.]+)\s*([KMBT]?)\s*$", re.I)
_MULT = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
#: runtime overhead on top of the weights (KV cache at a default context, buffers)
OVERHEAD = 1.2


def store_path() -> Path:
    home = os.environ.get("KNOLLM_HOME")
    if home:
        return Path(home) / "local_models.json"
    try:
        from platformdirs import user_data_dir

        return Path(user_data_dir("knollm", appauthor=False)) / "local_models.json"
    except ImportError:  # pragma: no cover
        return Path.home() / ".local" / "share" / "knollm" / "local_models.json"


def machine_memory() -> dict[str, int | None]:
    """``{"ram": bytes, "vram": bytes|None}`` of this machine (VRAM via nvidia-smi when present)."""
    ram = None
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    vram = None
    import shutil

    if shutil.which("nvidia-smi"):
        import subprocess

        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5).stdout
            vram = sum(int(x) for x in out.split() if x.isdigit()) * 2**20 or None
        except (OSError, subprocess.SubprocessError):
            vram = None
    return {"ram": ram, "vram": vram}


def is_cloud_model(provider: str | None, mid: str | None) -> bool:
    """Whether Ollama model ``mid`` is one of Ollama's *cloud* models (``gpt-oss:120b-cloud``,
    ``glm-4.6:cloud``): listed by the local server, but its prompts go to ollama.com."""
    if provider != "ollama" or not mid:
        return False
    tag = mid.rpartition(":")[2] if ":" in mid else mid
    return tag == "cloud" or tag.endswith("-cloud")


def _params(text: str | None) -> int | None:
    m = _SIZE_RE.match(text or "")
    return int(float(m.group(1)) * _MULT[m.group(2).upper()]) if m else None


def memory_estimate(size_bytes: int | None, loaded_bytes: int | None = None) -> int | None:
    """Bytes a model needs to run: what it uses when loaded, else its file size x :data:`OVERHEAD`."""
    if loaded_bytes:
        return int(loaded_bytes)
    return int(size_bytes * OVERHEAD) if size_bytes else None


def _model(provider: str, host: str, mid: str, **kw: Any) -> dict[str, Any]:
    caps = {c: None for c in ("tools", "vision", "structured_output", "json_mode", "reasoning", "prompt_caching",
                              "web_search", "audio_input", "pdf_input", "fine_tuning")}
    caps.update(kw.pop("capabilities", {}) or {})
    src = f"local@{host}"
    m = {"key": f"{provider}/{mid}", "provider": provider, "id": mid, "canonical_id": mid.split(":")[0].lower(),
         "name": mid, "kind": kw.pop("kind", "chat"), "context_window": kw.pop("context_window", None),
         "max_output": None, "input_modalities": ["text"] + (["image"] if caps.get("vision") else []),
         "output_modalities": ["text"], "capabilities": caps,
         "prices": {"input": 0.0, "output": 0.0, "cache_read": None, "cache_write": None, "request": None,
                    "image": None},
         "free": True, "variable_pricing": False, "deprecated": None, "open_weights": None, "local": True,
         "host": host, "flags": ["local"], "joins": {}, "origin": [src]}
    m.update(kw)
    m["sources"] = {"prices.input": src, "prices.output": src,
                    **{f"capabilities.{k}": src for k, v in caps.items() if v is not None},
                    **{k: src for k in ("context_window", "parameters", "quantization", "memory_estimate")
                       if m.get(k) is not None}}
    return m


def _json(resp: Any, key: str) -> dict[str, Any]:
    resp.raise_for_status()
    data = resp.json()
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{resp.request.url}: no {key!r} list in the answer")
    return data


def _ollama(client: Any, host: str) -> list[dict[str, Any]]:
    tags = _json(client.get(f"{host}/api/tags"), "models")
    try:
        running = {r.get("name") or r.get("model"): r
                   for r in _json(client.get(f"{host}/api/ps"), "models")["models"] if isinstance(r, dict)}
    except Exception:  # older servers have no /api/ps; it only adds what is loaded
        running = {}
    out = []
    for t in tags.get("models") or []:
        name = t.get("name") or t.get("model")
        if not name:
            continue
        details = dict(t.get("details") or {})
        try:
            r = client.post(f"{host}/api/show", json={"model": name})
            r.raise_for_status()
            show = r.json()
        except Exception:  # a model /api/show cannot describe keeps its /api/tags facts
            show = {}
        show = show if isinstance(show, dict) else {}
        details.update(show.get("details") or {})
        info = show.get("model_info") or {}
        arch = info.get("general.architecture") or details.get("family")
        native = info.get(f"{arch}.context_length") if arch else None
        m = re.search(r"^\s*num_ctx\s+(\d+)", show.get("parameters") or "", re.M)
        run = running.get(name) or {}
        # the Modelfile's num_ctx, else the model's native window: what it can be asked for.
        # /api/ps's context_length is what it is loaded with now (the last request's num_ctx)
        effective = int(m.group(1)) if m else None
        reported = show.get("capabilities")
        caps: dict[str, Any] = {}
        kind = "chat"
        if isinstance(reported, list):
            caps = {"tools": "tools" in reported, "vision": "vision" in reported, "reasoning": "thinking" in reported}
            if "embedding" in reported and "completion" not in reported:
                kind = "embedding"
        params = info.get("general.parameter_count") or _params(details.get("parameter_size"))
        # an Ollama cloud model (Ollama >= 0.12: remote_host / remote_model in /api/tags and
        # /api/show): the local server only forwards its prompts to ollama.com. Not local,
        # and its few-hundred-byte "size" says nothing about memory
        remote_host = t.get("remote_host") or show.get("remote_host")
        remote_model = t.get("remote_model") or show.get("remote_model")
        if remote_host or remote_model or is_cloud_model("ollama", name):
            out.append(_model(
                "ollama", host, name, kind=kind, capabilities=caps, context_window=effective or native,
                native_context=native, effective_context=effective, loaded_context=None,
                family=details.get("family"), parameters=params, parameter_size=details.get("parameter_size"),
                quantization=details.get("quantization_level"), size_on_disk=None, loaded=False,
                memory_in_use=None, memory_estimate=None, local=False, flags=["cloud"],
                remote_host=remote_host or "https://ollama.com", remote_model=remote_model))
            continue
        out.append(_model(
            "ollama", host, name, kind=kind, capabilities=caps, context_window=effective or native,
            native_context=native, effective_context=effective, loaded_context=run.get("context_length"),
            family=details.get("family"),
            parameters=params, parameter_size=details.get("parameter_size"),
            quantization=details.get("quantization_level"), size_on_disk=t.get("size"),
            loaded=bool(run), memory_in_use=run.get("size"),
            memory_estimate=memory_estimate(t.get("size"), run.get("size"))))
    return out


def _openai(client: Any, host: str) -> list[dict[str, Any]]:
    data = _json(client.get(f"{host}/v1/models"), "data")
    out = []
    for d in data.get("data") or []:
        mid = d.get("id")
        if not mid:
            continue
        meta = d.get("meta") or {}  # llama.cpp server
        ctx = d.get("max_model_len") or meta.get("n_ctx_train") or d.get("context_length")
        size = meta.get("size")
        out.append(_model("local", host, mid, context_window=ctx, native_context=ctx, parameters=meta.get("n_params"),
                          size_on_disk=size, owned_by=d.get("owned_by"), memory_estimate=memory_estimate(size)))
    return out


def scan_host(url: str, kind: str | None = None, *, timeout: float = 3.0) -> dict[str, Any]:
    """Scan one server. ``kind``: ``ollama`` / ``openai`` / None (try Ollama, then OpenAI-compatible).

    Returns ``{"host", "kind", "models", "error"}``; an unreachable server is an error row, not an exception.
    """
    import httpx2

    host = url.rstrip("/")
    if host.endswith("/v1"):
        host, kind = host[:-3], kind or "openai"
    errors = []
    with httpx2.Client(timeout=timeout) as client:
        for k in ([kind] if kind else ["ollama", "openai"]):
            try:
                models = _ollama(client, host) if k == "ollama" else _openai(client, host)
                return {"host": host, "kind": k, "models": models, "error": None}
            except (httpx2.HTTPError, ValueError, AttributeError) as e:
                errors.append(f"{k}: {type(e).__name__}: {e}")
    return {"host": host, "kind": kind, "models": [], "error": "; ".join(errors)}


def scan(hosts: list[str] | None = None, *, timeout: float = 3.0) -> dict[str, Any]:
    """Scan ``hosts`` (default: :data:`DEFAULT_HOSTS`); ``{"scanned", "hosts": [...], "models", "memory"}``."""
    targets = [(None, h) for h in hosts] if hosts else [(k, h) for k, h in DEFAULT_HOSTS]
    rows = [scan_host(h, k, timeout=timeout) for k, h in targets]
    models = [m for r in rows for m in r["models"]]
    return {"scanned": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "hosts": [{k: v for k, v in r.items() if k != "models"} | {"models": len(r["models"])} for r in rows],
            "models": models, "memory": machine_memory()}


def save_scan(result: dict[str, Any], path: Path | None = None) -> Path:
    import orjson

    from knollm.fsutil import atomic_write

    p = path or store_path()
    atomic_write(p, orjson.dumps(result, option=orjson.OPT_INDENT_2), durable=False)
    return p


def load_scan(path: Path | None = None) -> dict[str, Any]:
    """The stored scan (``{"models": []}`` if none or unreadable)."""
    import orjson

    p = path or store_path()
    try:
        data = orjson.loads(p.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {"models": [], "hosts": [], "scanned": None}
    return data if isinstance(data, dict) else {"models": []}


def join(catalog: Any, models: list[dict[str, Any]]) -> Any:
    """A :class:`knollm.query.api.Catalog` with the scanned models added (providers ``ollama``/``local``)."""
    from knollm.query.api import Catalog

    if not models:
        return catalog
    have = {p["id"] for p in catalog.providers}
    provs = [{"id": pid, "name": pid, "kind": "local", "api_key_env": [], "base_url": None}
             for pid in sorted({m["provider"] for m in models}) if pid not in have]
    keys = {m["key"] for m in models}
    data = dict(catalog.data, models=[m for m in catalog.models if m["key"] not in keys] + list(models),
                providers=list(catalog.providers) + provs)
    return Catalog(data)
