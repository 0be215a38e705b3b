"""Count the data-truth error classes of issue 10 on a dump directory.

Builds the catalog with the Knollm found on PYTHONPATH and measures each class from the
raw dumps and the catalog, reading only fields every version has (new ones with .get), so
the same script measures a checkout before and after the change:

    PYTHONPATH=. python scripts/data_truth_report.py ../shared/model_catalog
    PYTHONPATH=/tmp/knollm-main python scripts/data_truth_report.py ../shared/model_catalog   # before

Prints one line per class (``class: count``) and, with ``--json``, a JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

# the plausible ranges (USD per 1M tokens / per unit), fixed here so old and new code are
# measured against the same yardstick
PRICE_HI = {"input": 200.0, "output": 800.0, "cache_read": 200.0, "cache_write": 250.0}
EMBED_HI = 20.0
TOKENS = (16, 10_500_000)
PLACEHOLDERS = {9_999_999, 99_999_999, 999_999_999, 2_147_483_647, 4_294_967_295, 1_000_000_000}
MAXOUT_KEYS = (("max_output_length",), ("limits", "completion"), ("config", "max_output_length"),
               ("top_provider", "max_completion_tokens"), ("max_completion_tokens",))
IMAGE_KEYS = ("input_cost_per_image", "output_cost_per_image", "input_cost_per_pixel", "output_cost_per_pixel",
              "output_cost_per_image_token", "input_cost_per_image_token")


def _get(rec, path):
    for p in path:
        if not isinstance(rec, dict):
            return None
        rec = rec.get(p)
    return rec


def _records(path: Path):
    d = json.loads(path.read_bytes())
    if isinstance(d, dict) and isinstance(d.get("data"), list):
        return [r for r in d["data"] if isinstance(r, dict)]
    if isinstance(d, list):
        return [r for r in d if isinstance(r, dict)]
    return [dict(v, _key=k) for k, v in d.items() if isinstance(v, dict)]


def measure(dumps: Path) -> dict[str, int | str]:
    from knollm.catalog.build import build_catalog
    from knollm.catalog.diagnostics import Diagnostics
    from knollm.catalog.identity import canonical_id
    from knollm.catalog.readers import read_dump
    from knollm.errors import KnollmError

    cat = build_catalog(dumps)
    models = cat["models"]
    by_key = {m["key"]: m for m in models}
    out: dict[str, int | str] = {}

    def sus(m, path):
        return path in (m.get("suspect") or {})

    # 1. implausible values published without a suspect mark
    out["1_implausible_price_unflagged"] = sum(
        1 for m in models for k, hi in PRICE_HI.items()
        if (v := m["prices"].get(k)) is not None
        and v > (EMBED_HI if m["kind"] == "embedding" and k in ("input", "output") else hi) and not sus(m, f"prices.{k}"))
    out["1_implausible_limit_unflagged"] = sum(
        1 for m in models for f in ("context_window",) if (v := m.get(f)) is not None
        and (v in PLACEHOLDERS or not TOKENS[0] <= v <= TOKENS[1]) and not sus(m, f))
    out["1_suspect_values_flagged"] = sum(len(m.get("suspect") or {}) for m in models)
    # 2. price dimensions dropped (LiteLLM)
    from knollm.catalog.sources.litellm import litellm_model_id, litellm_provider_id

    tiered = tiered_empty = img = img_unpriced = 0
    lit = dumps / "models_litellm.json"
    if lit.is_file():
        raw = json.loads(lit.read_bytes())
        for k, rec in raw.items():
            lp = rec.get("litellm_provider") if isinstance(rec, dict) else None
            if not isinstance(lp, str) or " " in lp:
                continue
            m = by_key.get(f"{litellm_provider_id(lp)}/{litellm_model_id(k, lp)}")
            if any("_above_" in f and f.endswith("_tokens") and v for f, v in rec.items()):
                tiered += 1
                if m is None or not m.get("price_tiers"):
                    tiered_empty += 1
            if any(rec.get(f) for f in IMAGE_KEYS):
                img += 1
                pr = (m or {}).get("prices") or {}
                if not any(pr.get(f) is not None for f in ("image", "image_input", "pixel_input", "pixel_output",
                                                           "image_token_input", "image_token_output")):
                    img_unpriced += 1
    out["2_litellm_tiered_rows"] = tiered
    out["2_litellm_tiered_rows_without_tiers"] = tiered_empty
    out["2_litellm_image_priced_rows"] = img
    out["2_litellm_image_rows_unpriced"] = img_unpriced
    # 3. fields ignored; borrowed max output
    from knollm.providers import provider_registry

    reg = provider_registry()
    fold = getattr(reg, "dump_provider", reg.resolve)
    spelled = spelled_lost = modin = modin_lost = 0
    for f in sorted(dumps.glob("models_*.json")):
        if f.name == "models_litellm.json":
            continue
        pid = fold(f.stem[7:])
        try:
            recs = _records(f)
        except ValueError:
            continue
        for r in recs:
            rid = r.get("id")
            if not isinstance(rid, str):
                continue
            m = by_key.get(f"{pid}/{rid}")
            if any(isinstance(_get(r, p), int) and _get(r, p) > 0 for p in MAXOUT_KEYS):
                spelled += 1
                if m is None or m.get("max_output") is None:
                    spelled_lost += 1
            if isinstance(_get(r, ("modalities", "input")), list):
                modin += 1
                if m is None or m.get("sources", {}).get("input_modalities") != "dump":
                    modin_lost += 1
    out["3_max_output_spellings"] = spelled
    out["3_max_output_spellings_lost"] = spelled_lost
    out["3_modalities_input_records"] = modin
    out["3_modalities_input_lost"] = modin_lost
    over = [m for m in models if m.get("max_output") and m.get("context_window")
            and m["max_output"] > m["context_window"]]
    out["3_max_output_gt_context"] = len(over)
    out["3_max_output_gt_context_not_own_or_unflagged"] = sum(
        1 for m in over if not (m["sources"].get("max_output") == m["sources"].get("context_window") == "dump"
                                and sus(m, "max_output")))
    # 4. documentation entries
    docs = [w for w in cat["warnings"] if w["code"] == "documentation-entry"]
    out["4_documentation_entries_skipped"] = len(docs)
    out["4_doc_entries_as_models_or_bad_records"] = sum(1 for m in models if m["id"] == "sample_spec") + sum(
        1 for w in cat["warnings"] if w["code"] == "bad-record" and w["file"] == "models_litellm.json")
    # 5. conflicting duplicates
    out["5_duplicates_info_only"] = sum(1 for w in cat["warnings"] if w["code"] == "duplicate-id")
    out["5_conflicts_reported_with_both_values"] = sum(1 for w in cat["warnings"]
                                                     if w["code"] == "conflicting-duplicate")
    # 6. encodings: a real dump re-saved with a BOM, as UTF-16, with one NaN
    lost = 0
    src = dumps / "models_groq.json"
    if src.is_file():
        text = src.read_text()
        variants = {"bom": b"\xef\xbb\xbf" + text.encode(), "utf16": text.encode("utf-16"),
                    "nan": text.replace('"context_window": 131072', '"context_window": NaN', 1).encode()}
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in variants.items():
                p = Path(tmp) / "models_groq.json"
                p.write_bytes(data)
                try:
                    n = len(read_dump(p, Diagnostics()).records)
                except KnollmError:
                    n = 0
                lost += n == 0
    out["6_files_lost_of_3_encoding_variants"] = lost
    # 7. identity
    # "<provider>-<another vendor's model>" (databricks-claude-3-7-sonnet, cerebras-gpt-oss-120b)
    foreign = re.compile(r"(gpt|llama|meta-llama|claude|qwen|mistral|mixtral|gemma|deepseek|glm|kimi|bge|e5|gte)\b")
    prefixed = [m for m in models if m["id"].lower().startswith(m["provider"] + "-")
                and foreign.match(m["id"].lower()[len(m["provider"]) + 1:])]
    out["7_own_name_prefixed_foreign_ids"] = len(prefixed)
    out["7_own_name_prefix_kept_in_canonical"] = sum(
        1 for m in prefixed if m["canonical_id"].startswith(m["provider"] + "-"))
    sub_lost = 0
    if (dumps / "models_featherless_best.json").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(dumps / "models_featherless_best.json", Path(tmp) / "models_featherless_manual.json")
            c2 = build_catalog(tmp, registries=False)
            sub_lost = sum(1 for m in c2["models"] if m["provider"] != "featherless"
                           or m["canonical_id"] != canonical_id(m["id"], "featherless"))
    out["7_subset_file_offers_not_folded"] = sub_lost
    # 8. registry zeros shown as free
    out["8_free_from_registry_zero"] = sum(
        1 for m in models if m["free"] and m["sources"].get("prices.input") in ("models.dev", "genai-prices")
        and "free" not in (m["id"] + (m.get("name") or "")).lower())
    out["8_free_models"] = sum(1 for m in models if m["free"])
    # 9. stale flags
    legacy = [m for m in models if m["provider"] == "openai" and m["id"] in (
        "ada", "babbage", "curie", "davinci", "text-davinci-003", "text-davinci-002", "text-curie-001",
        "text-babbage-001", "text-ada-001")]
    out["9_openai_legacy_not_deprecated"] = sum(1 for m in legacy if m.get("deprecated") is not True)
    dalle = by_key.get("openai/dall-e-3") or {}
    out["9_dalle3_tools_or_800_context"] = int(dalle.get("capabilities", {}).get("tools") is True
                                               or dalle.get("context_window") == 800)
    # disagreements and freshness
    out["disagreements_models_with_alternatives"] = sum(1 for m in models if m.get("alternatives"))
    try:
        from knollm.query.audit import disagreements, summary

        s = summary(disagreements(cat))
        out["audit_rows_price_context_maxout_cap_dep"] = "/".join(str(s[g]) for g in (
            "price", "context", "max_output", "capability", "deprecation"))
        out["audit_registry_zero_rows"] = s["registry_zero"]
    except ImportError:
        out["audit_rows_price_context_maxout_cap_dep"] = "n/a (no knollm audit)"
    out["data_date"] = str(cat.get("data_date"))
    out["providers_with_data_date"] = sum(1 for p in cat["providers"] if p.get("data_date"))
    out["data_findings"] = sum(1 for w in cat["warnings"] if w.get("level") == "data")
    out["warnings_failing_strict"] = sum(1 for w in cat["warnings"] if w.get("level", "warning") == "warning")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dumps", type=Path)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not a.dumps.is_dir():
        print(f"{a.dumps}: not a directory", file=sys.stderr)
        return 2
    res = measure(a.dumps)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
