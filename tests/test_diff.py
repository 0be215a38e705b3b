"""knollm diff: on small catalogs, and on real dumps with synthetic edits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from knollm.cli import main
from knollm.diff.compare import (
    diff_catalogs,
    has_changes,
    load_diffs,
    render_atom,
    render_changes_markdown,
    render_markdown,
    render_text,
    save_diff,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "model_catalog"
ATOM = "{http://www.w3.org/2005/Atom}"


def model(key: str, **kw) -> dict:
    provider, mid = key.split("/", 1)
    m = {"key": key, "provider": provider, "id": mid, "canonical_id": kw.pop("canonical_id", mid),
         "name": kw.pop("name", mid), "context_window": kw.pop("context_window", 8192), "max_output": None,
         "capabilities": {"tools": kw.pop("tools", None), "vision": None},
         "prices": {"input": kw.pop("input", 1.0), "output": kw.pop("output", 2.0), "cache_read": None,
                    "cache_write": None, "request": None, "image": None},
         "deprecated": kw.pop("deprecated", None)}
    assert not kw
    return m


OLD = {"models": [
    model("a/steady"),
    model("a/pricey", input=2.0, output=8.0),
    model("a/ctx", context_window=8192, tools=None),
    model("a/old-name-2024", canonical_id="fancy-1", name="Fancy One"),
    model("a/by-name-v1", canonical_id="x1", name="Same Name"),
    model("a/gone"),
    model("b/other-provider-same-canon", canonical_id="fancy-2"),
]}
NEW = {"models": [
    model("a/steady"),
    model("a/pricey", input=2.5, output=6.0),
    model("a/ctx", context_window=131072, tools=True),
    model("a/new-name-2025", canonical_id="fancy-1", name="Fancy One (2025)"),
    model("a/by-name-v2", canonical_id="x2", name="same  name"),
    model("a/brand-new", name="Brand <New> | model", input=0.1, output=0.2),
    model("c/fancy-2", canonical_id="fancy-2"),  # another provider: not a rename of b/...
]}


def test_diff_catalogs_kinds():
    d = diff_catalogs(OLD, NEW, date="2026-11-21")
    s = d["summary"]
    assert (s["added"], s["removed"], s["renamed"], s["repriced"], s["changed"]) == (2, 2, 2, 1, 1)
    assert [m["key"] for m in d["added"]] == ["a/brand-new", "c/fancy-2"]
    assert [m["key"] for m in d["removed"]] == ["a/gone", "b/other-provider-same-canon"]
    ren = {r["old_key"]: (r["new_key"], r["match"]) for r in d["renamed"]}
    assert ren == {"a/old-name-2024": ("a/new-name-2025", "canonical_id"), "a/by-name-v1": ("a/by-name-v2", "name")}
    rp = d["repriced"][0]
    assert rp["key"] == "a/pricey"
    assert rp["changes"]["input"] == {"old": 2.0, "new": 2.5, "pct": 25.0}
    assert rp["changes"]["output"]["pct"] == -25.0
    ch = d["changed"][0]["changes"]
    assert ch["context_window"] == {"old": 8192, "new": 131072} and ch["capabilities.tools"]["new"] is True
    assert s["providers_added"] == ["c"] and s["providers_removed"] == ["b"]
    assert has_changes(d) and not has_changes(diff_catalogs(OLD, OLD))
    json.dumps(d)  # JSON-able


def test_price_noise_and_unknown_prices():
    a = {"models": [model("p/x", input=0.1 + 0.2), model("p/y", input=None)]}
    b = {"models": [model("p/x", input=0.3), model("p/y", input=1.0)]}
    d = diff_catalogs(a, b)
    assert [r["key"] for r in d["repriced"]] == ["p/y"]
    assert d["repriced"][0]["changes"]["input"] == {"old": None, "new": 1.0, "pct": None}


def test_renderers_escape_untrusted_text():
    d = diff_catalogs(OLD, NEW, date="2026-11-21")
    text = render_text(d)
    assert "+ a/brand-new" in text and "input $2 → $2.5 (+25.0%)" in text and "a/old-name-2024 → a/new-name-2025" in text
    md = render_markdown(d)
    assert "Brand &lt;New&gt; \\| model" in md and "<New>" not in md
    assert "| `a/pricey` | input | $2 | $2.5 | +25.0% |" in md
    page = render_changes_markdown([d, {**d, "date": "2026-11-20"}])
    assert page.index("## 2026-11-21") < page.index("## 2026-11-20") and "feed.xml" in page
    assert "No refresh" in render_changes_markdown([])


def test_atom_feed_is_valid_xml():
    d1 = diff_catalogs(OLD, NEW, date="2026-11-21")
    d0 = diff_catalogs(OLD, OLD, date="2026-11-20")
    xml = render_atom([d0, d1], "https://example.org/knollm")
    root = ET.fromstring(xml.encode())
    assert root.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated", "author"):
        assert root.find(f"{ATOM}{tag}") is not None
    assert root.find(f"{ATOM}updated").text == "2026-11-21T00:00:00Z"
    entries = root.findall(f"{ATOM}entry")
    assert len(entries) == 2
    e = entries[0]
    assert e.find(f"{ATOM}id").text == "https://example.org/knollm/changes/#2026-11-21"
    assert "2 added" in e.find(f"{ATOM}title").text
    content = e.find(f"{ATOM}content")
    assert content.get("type") == "html" and "Brand &lt;New&gt;" in content.text  # escaped HTML inside
    assert len({x.find(f"{ATOM}id").text for x in entries}) == 2
    assert render_atom([], "https://x.org").startswith('<?xml')


def test_save_and_load_diffs(tmp_path):
    for day in ("2026-11-19", "2026-11-21", "2026-11-20"):
        save_diff(diff_catalogs(OLD, NEW, date=day), tmp_path)
    (tmp_path / "junk.json").write_text("{not json")
    got = load_diffs(tmp_path, limit=2)
    assert [d["date"] for d in got] == ["2026-11-21", "2026-11-20"]
    assert load_diffs(tmp_path / "missing") == []


def test_cli_on_catalog_files(tmp_path, capsys):
    a, b = tmp_path / "old.json", tmp_path / "new.json"
    a.write_text(json.dumps(OLD))
    b.write_text(json.dumps(NEW))
    assert main(["diff", str(a), str(b), "--json", "--date", "2026-11-21"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["summary"]["repriced"] == 1 and d["date"] == "2026-11-21"
    assert main(["diff", str(a), str(b), "--markdown", "--exit-code"]) == 1
    assert "### Repriced (1)" in capsys.readouterr().out
    assert main(["diff", str(a), str(a), "--exit-code"]) == 0
    capsys.readouterr()
    assert main(["diff", str(a), str(b), "--csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("change,key,field")
    (tmp_path / "bad.json").write_text('{"x": 1}')
    assert main(["diff", str(a), str(tmp_path / "bad.json")]) == 1
    assert "not a Knollm catalog" in capsys.readouterr().err
    assert main(["diff", str(a), str(b), "--date", "yesterday"]) == 2


@pytest.mark.shared
def test_diff_real_dumps_with_synthetic_edits(tmp_path, capsys):
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} not present")
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    for name in ("models_openrouter.json", "models_anthropic.json", "models_togetherai.json", "models_groq.json"):
        shutil.copy(SHARED / name, old / name)
    shutil.copytree(old, new)
    # synthetic edits: a price change, a removed model, an added model
    p = new / "models_openrouter.json"
    doc = json.loads(p.read_text())
    target = next(m for m in doc["data"] if float(m["pricing"]["prompt"]) > 0)
    target["pricing"]["prompt"] = repr(float(target["pricing"]["prompt"]) * 1.5)
    removed = doc["data"].pop(-1)["id"]
    doc["data"].append({"id": "acme/brand-new-model", "name": "Acme: Brand New", "context_length": 65536,
                        "pricing": {"prompt": "0.000001", "completion": "0.000002"}})
    p.write_text(json.dumps(doc))
    t = json.loads((new / "models_togetherai.json").read_text())
    t.pop(0)
    (new / "models_togetherai.json").write_text(json.dumps(t))

    save = tmp_path / "changes"
    assert main(["diff", str(old), str(new), "--json", "--date", "2026-11-21", "--save", str(save)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [m["key"] for m in d["added"]] == ["openrouter/acme/brand-new-model"]
    assert f"openrouter/{removed}" in [m["key"] for m in d["removed"]]
    assert d["summary"]["removed"] == 2 and d["summary"]["renamed"] == 0
    rp = {r["key"]: r["changes"] for r in d["repriced"]}
    assert list(rp) == [f"openrouter/{target['id']}"]
    assert rp[f"openrouter/{target['id']}"]["input"]["pct"] == pytest.approx(50.0, abs=0.01)
    assert d["summary"]["changed"] == 0
    assert (save / "2026-11-21.json").exists()
    # identical dump dirs: nothing changed
    assert main(["diff", str(old), str(old), "--exit-code"]) == 0
    assert "0 added, 0 removed" in capsys.readouterr().out


def test_changes_page_explains_a_first_build():
    from knollm.diff.compare import render_changes_markdown

    md = render_changes_markdown([])
    assert "No refresh has been recorded yet" in md and "What will appear here" in md
    assert "added" in md and "repriced" in md
