#!/usr/bin/env python3
"""Measure install/import facts of Python LLM client libraries, for real.

For every PyPI library listed in ``LIBRARIES`` this script:

1. creates a *fresh* virtual environment with ``uv venv`` in a temporary
   directory outside the repository (an empty venv is the baseline),
2. installs the newest release that resolves for this interpreter
   (``uv pip install``, one venv per library),
3. reads the installed distribution's metadata: version, licence
   (``License-Expression``, else ``License``, else the ``License ::``
   classifiers), ``Requires-Python``, and the direct dependencies
   (``Requires-Dist`` entries whose marker holds on this platform with no
   extra requested),
4. counts every installed distribution minus the empty-venv baseline,
5. sums the bytes of site-packages minus the empty-venv baseline (measured
   before any import, so no ``__pycache__`` written by the timing runs is
   counted),
6. times a cold ``python -c "import MODULE"`` in a fresh process: one
   discarded first run (which also writes bytecode), then the median of
   ``--runs`` runs, minus the median of as many ``python -c "pass"`` runs;
   the same for the library's entry statement (``from openai import OpenAI``),
   because some packages import lazily.

curl is not a Python package: its ``curl --version`` line is recorded.

Each record says which version was measured and how it was chosen (``version_source``:
the newest release uv resolved for this Python, which can lag the newest on the index
when a dependency's newer release is missing) and, when PyPI's JSON API answers, that
version's upload date (``version_released``). ``knollm libraries check`` records the
newest release on the index next to it.

Libraries in ``IMPORT_ENV_VARIANTS`` are timed a second time with those environment
variables (``import_variants``): litellm fetches its model cost map at import unless
``LITELLM_LOCAL_MODEL_COST_MAP=True``. Libraries in ``NOT_BY_DEFAULT`` (litellm, whose
releases 1.82.7 and 1.82.8 were compromised) are only measured when named explicitly.

Results go to ``work/api_inference/measurements.json`` (merged with an
existing file, so ``python scripts/measure_libraries.py openai`` re-measures
one library). Needs ``uv`` on PATH (``pip install uv``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as im
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "work" / "api_inference" / "measurements.json"

# slug -> (PyPI distribution name, module whose import is timed, entry statement)
# The entry statement is what a minimal program runs first; it is timed too because
# some packages import lazily (``import instructor`` alone does almost nothing).
LIBRARIES: dict[str, tuple[str, str, str]] = {
    "requests": ("requests", "requests", "import requests; requests.post"),
    "httpx": ("httpx", "httpx", "import httpx; httpx.Client"),
    "aiohttp": ("aiohttp", "aiohttp", "import aiohttp; aiohttp.ClientSession"),
    "openai": ("openai", "openai", "from openai import OpenAI"),
    "anthropic": ("anthropic", "anthropic", "from anthropic import Anthropic"),
    "litellm": ("litellm", "litellm", "from litellm import completion"),
    "instructor": ("instructor", "instructor", "from instructor import from_openai"),
    "mirascope": ("mirascope", "mirascope", "from mirascope import llm"),
    "pydantic-ai": ("pydantic-ai", "pydantic_ai", "from pydantic_ai import Agent"),
    "langchain": ("langchain-openai", "langchain_openai", "from langchain_openai import ChatOpenAI"),
    "llama-index": ("llama-index", "llama_index.core", "from llama_index.core import VectorStoreIndex"),
    "aisuite": ("aisuite", "aisuite", "import aisuite; aisuite.Client"),
    "guidance": ("guidance", "guidance", "from guidance import gen, models"),
    "outlines": ("outlines", "outlines", "import outlines; outlines.from_openai"),
    "portkey-ai": ("portkey-ai", "portkey_ai", "from portkey_ai import Portkey"),
    "any-llm": ("any-llm-sdk", "any_llm", "from any_llm import completion"),
}


# a second timing run with these environment variables set
IMPORT_ENV_VARIANTS: dict[str, dict[str, str]] = {
    "litellm": {"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
}
# installed (and imported) only when named on the command line
NOT_BY_DEFAULT = {"litellm"}


def released(dist_name: str, version: str) -> str | None:
    """Upload date of ``version`` from PyPI's JSON API, or None when it cannot be read."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"https://pypi.org/pypi/{dist_name}/json", timeout=30) as resp:  # noqa: S310
            files = json.loads(resp.read()).get("releases", {}).get(version) or []
    except (OSError, ValueError):
        return None
    times = sorted((f.get("upload_time") or "")[:10] for f in files if f.get("upload_time"))
    return times[0] if times else None


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def site_packages(venv: Path) -> Path:
    found = list((venv / "lib").glob("python*/site-packages"))
    if len(found) != 1:
        raise RuntimeError(f"cannot find site-packages in {venv}")
    return found[0]


def dir_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def dists(sp: Path) -> dict[str, im.Distribution]:
    out = {}
    for d in im.distributions(path=[str(sp)]):
        name = d.metadata["Name"]
        if name:
            out[canonicalize_name(name)] = d
    return out


def make_venv(parent: Path, name: str) -> Path:
    venv = parent / name
    run(["uv", "venv", "--quiet", "--python", sys.executable, str(venv)])
    return venv


def median_wall(python: Path, code: str, runs: int, env: dict) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(python), "-c", code], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times), times


_LICENCE_HEADS = (("MIT License", "MIT"), ("Apache License", "Apache-2.0"), ("BSD", "BSD"),
                  ("Mozilla Public License", "MPL-2.0"), ("GNU GENERAL PUBLIC", "GPL"))


def licence_from_file(dist) -> str | None:
    """Metadata without a licence field: read the shipped licence file's heading."""
    for f in dist.files or []:
        name = f.name.upper()
        if name.startswith(("LICENSE", "LICENCE", "COPYING")):
            try:
                text = Path(f.locate()).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            head = " ".join(text.split()[:40])
            for needle, spdx in _LICENCE_HEADS:
                if needle.upper() in head.upper():
                    return f"{spdx} (from {f.name}; no licence field in metadata)"
            if "PERMISSION IS HEREBY GRANTED, FREE OF CHARGE" in head.upper():
                return f"MIT (from {f.name}; no licence field in metadata)"
    return None


def licence_of(meta) -> str | None:
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    lic = meta.get("License")
    if lic and lic.strip() and lic.strip().upper() != "UNKNOWN":
        lic = lic.strip()
        # some projects paste the whole licence text: keep its first line
        first = lic.splitlines()[0].strip()
        return first if len(first) <= 80 else first[:77] + "..."
    classifiers = [c.split("::")[-1].strip() for c in (meta.get_all("Classifier") or [])
                   if c.startswith("License ::")]
    return "; ".join(classifiers) or None


def direct_deps(meta) -> list[str]:
    names = []
    for raw in meta.get_all("Requires-Dist") or []:
        req = Requirement(raw)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(canonicalize_name(req.name))
    return sorted(set(names))


def measure_one(tmp: Path, slug: str, dist_name: str, module: str, entry: str, runs: int,
                baseline: dict) -> dict:
    venv = make_venv(tmp, f"v-{slug}")
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["VIRTUAL_ENV"] = str(venv)
    t0 = time.perf_counter()
    proc = subprocess.run(["uv", "pip", "install", "--quiet", "--python", str(py), dist_name],
                          capture_output=True, text=True, env=env)
    install_s = time.perf_counter() - t0
    if proc.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        return {"pypi": dist_name, "module": module, "error": proc.stderr.strip()[-2000:]}
    sp = site_packages(venv)
    installed = dists(sp)
    dist = installed[canonicalize_name(dist_name)]
    meta = dist.metadata
    size = dir_size(sp) - baseline["site_packages_bytes"]
    all_names = sorted(n for n in installed if n not in baseline["dists"])
    record = {
        "pypi": dist_name,
        "module": module,
        "version": meta["Version"],
        "version_released": released(dist_name, meta["Version"]),
        "version_source": f"the newest release `uv pip install {dist_name}` resolved for Python "
                          f"{platform.python_version()} in a fresh venv",
        "license": licence_of(meta) or licence_from_file(dist),
        "requires_python": meta.get("Requires-Python"),
        "direct_dependencies": len(direct_deps(meta)),
        "direct_dependency_names": direct_deps(meta),
        "installed_distributions": len(all_names) - 1,  # minus the library itself
        "installed_distribution_names": [
            f"{n}=={installed[n].metadata['Version']}" for n in all_names
        ],
        "installed_size_bytes": size,
        "installed_size_mb": round(size / 1_000_000, 1),
        "install_seconds": round(install_s, 1),
    }
    load_before = os.getloadavg()[0]
    # first run: imports without bytecode and writes it (recorded, not used for the median)
    first, _ = median_wall(py, f"import {module}", 1, env)
    base_ms, base_runs = median_wall(py, "pass", runs, env)
    imp_ms, imp_runs = median_wall(py, f"import {module}", runs, env)
    entry_ms, entry_runs = median_wall(py, entry, runs, env)
    record.update({
        "import_first_run_ms": round(first - base_ms, 1),
        "import_time_ms": round(imp_ms - base_ms, 1),
        "import_runs_ms": [round(t, 1) for t in imp_runs],
        "entry_statement": entry,
        "entry_import_ms": round(entry_ms - base_ms, 1),
        "entry_runs_ms": [round(t, 1) for t in entry_runs],
        # 1-minute load average around the timing runs: other work on the machine slows imports
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "interpreter_start_runs_ms": [round(t, 1) for t in base_runs],
    })
    extra = IMPORT_ENV_VARIANTS.get(slug)
    if extra:
        env2 = {**env, **extra}
        median_wall(py, f"import {module}", 1, env2)  # discarded first run
        v_base, _ = median_wall(py, "pass", runs, env2)
        v_imp, _ = median_wall(py, f"import {module}", runs, env2)
        v_entry, _ = median_wall(py, entry, runs, env2)
        record["import_variants"] = [{"env": extra, "import_time_ms": round(v_imp - v_base, 1),
                                      "entry_import_ms": round(v_entry - v_base, 1)}]
    shutil.rmtree(venv, ignore_errors=True)
    return record


def measure_curl() -> dict:
    path = shutil.which("curl")
    if not path:
        return {"python_package": False, "error": "curl not found on PATH"}
    line = run([path, "--version"]).stdout.splitlines()[0]
    return {
        "python_package": False,
        "note": "curl is a command-line program, not a Python package: no PyPI facts apply.",
        "version": line.split()[1],
        "version_line": line,
        "path": path,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("libraries", nargs="*", help="slugs to measure (default: all)")
    ap.add_argument("--runs", type=int, default=7, help="timed import runs (median; >=5)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.runs < 5:
        ap.error("--runs must be at least 5")
    if shutil.which("uv") is None:
        ap.error("uv is required on PATH (pip install uv)")
    wanted = args.libraries or [s for s in LIBRARIES if s not in NOT_BY_DEFAULT]
    unknown = [w for w in wanted if w not in LIBRARIES and w != "curl"]
    if unknown:
        ap.error(f"unknown library slug(s): {', '.join(unknown)}")

    data = json.loads(args.out.read_text()) if args.out.exists() else {}
    data.setdefault("libraries", {})
    uv_version = run(["uv", "--version"]).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="knollm-measure-") as tmpname:
        tmp = Path(tmpname)
        base_venv = make_venv(tmp, "baseline")
        base_sp = site_packages(base_venv)
        baseline = {"site_packages_bytes": dir_size(base_sp), "dists": set(dists(base_sp))}
        data["libraries"]["curl"] = measure_curl()
        for slug in wanted:
            if slug == "curl":
                continue
            dist_name, module, entry = LIBRARIES[slug]
            print(f"[{dt.datetime.now():%H:%M:%S}] measuring {slug} ({dist_name})", flush=True)
            try:
                rec = measure_one(tmp, slug, dist_name, module, entry, args.runs, baseline)
            except Exception as exc:  # keep going; the error is recorded as data
                rec = {"pypi": dist_name, "module": module, "error": f"{type(exc).__name__}: {exc}"}
            rec["measured_at"] = dt.date.today().isoformat()
            data["libraries"][slug] = rec
            print(f"    -> {json.dumps({k: rec.get(k) for k in ('version', 'direct_dependencies', 'installed_distributions', 'installed_size_mb', 'import_time_ms', 'error')})}",
                  flush=True)
            # write after each library so a long run leaves partial results
            data.update({
                "measured_at": dt.date.today().isoformat(),
                "python_version": platform.python_version(),
                "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
                "cpu_count": os.cpu_count(),
                "installer": uv_version,
                "method": {
                    "venv": "fresh `uv venv` per library; baseline = empty venv",
                    "version": "newest release uv resolves for this Python",
                    "direct_dependencies": "Requires-Dist entries whose markers hold here, no extras",
                    "installed_distributions": "all distributions installed in the venv, minus baseline and the library itself",
                    "installed_size": "bytes of site-packages minus the empty venv's, before any import",
                    "import_time_ms": f"median of {args.runs} fresh `python -c 'import MODULE'` runs minus median of {args.runs} `python -c pass` runs, after one discarded first run that writes bytecode",
                    "import_first_run_ms": "the discarded first run (no bytecode yet) minus the `pass` median",
                    "entry_import_ms": "same as import_time_ms for the entry statement a minimal program runs (catches lazy imports)",
                    "license": "License-Expression, else License, else License :: classifiers, else the heading of the shipped licence file",
                },
            })
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    errors = [s for s, r in data["libraries"].items() if "error" in r]
    print("done" + (f"; errors: {errors}" if errors else ""))
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
