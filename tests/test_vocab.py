"""The one vocabulary (knollm/vocab.py): a capability added in ONE place reaches every consumer.

A subprocess loads ``knollm/vocab.py`` from its source text with one extra entry appended to
``CAPABILITY_TABLE`` (nothing else is edited or patched), registers it as ``knollm.vocab``
before the rest of Knollm is imported, and then drives the real consumers: the CLI filter,
``compare``, the JSON Schema, the site's capability matrix and the explorer index's
``vocab``. The explorer JavaScript is then run in chromium on that index and must show the
new capability's label and abbreviation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.http_static import serve_static

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DUMPS = Path(__file__).parent / "fixtures" / "dumps"
FAKE = 'Capability("holography", "holography (test)", "Ω", "holo", "A made-up capability only this test adds."),'

SCRIPT = textwrap.dedent(r'''
    import io, json, sys, types, contextlib
    from pathlib import Path

    root, dumps, out_dir, fake = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    path = root / "knollm" / "vocab.py"
    src = path.read_text()
    start = src.index("CAPABILITY_TABLE: tuple[Capability, ...] = (")
    end = src.index("\n)\n", start)
    src = src[:end] + "\n    " + fake + src[end:]          # the one edit: append one table entry
    vocab = types.ModuleType("knollm.vocab")
    vocab.__file__ = str(path)
    sys.modules["knollm.vocab"] = vocab
    exec(compile(src, str(path), "exec"), vocab.__dict__)
    import knollm
    knollm.vocab = vocab

    from knollm.cli import main

    def run(*argv):
        o, e = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            rc = main(list(argv))
        return rc, o.getvalue(), e.getvalue()

    res = {"vocab_caps": list(vocab.CAPABILITIES)}
    res["help"] = run("models", "search", "--help")[1]
    res["filter_ok"] = run("models", "search", "-c", "holography", "--dumps", dumps, "--json")
    res["filter_bad"] = run("models", "search", "-c", "telepathy", "--dumps", dumps)
    rc, out, err = run("models", "search", "--dumps", dumps, "--json", "-n", "2")
    found = json.loads(out)["models"]
    res["search_caps"] = list(found[0]["capabilities"])
    keys = [m["key"] for m in found]
    rc, out, err = run("compare", *keys, "--dumps", dumps, "--json")
    res["compare_fields"] = json.loads(out)["fields"]
    res["compare_text"] = run("compare", *keys, "--dumps", dumps)[1]

    from knollm.catalog.schema import Capabilities, json_schema
    res["schema_caps"] = list(json_schema()["$defs"]["Capabilities"]["properties"])
    res["model_rejects_str"] = False
    try:
        Capabilities(holography="yes")
    except Exception:
        res["model_rejects_str"] = True

    # a translator would set it; here one model says True so the site and JS have something to show
    from knollm.query.cache import cached_catalog
    cat = cached_catalog(Path(dumps))
    cat["models"][0]["capabilities"]["holography"] = True
    res["marked"] = cat["models"][0]["key"]
    from knollm.site.render import render_capability_matrix
    res["matrix"] = render_capability_matrix(cat)
    from knollm.site.data import explorer_index, explorer_index_bytes
    ix = explorer_index(cat)
    res["index_vocab_caps"] = ix["vocab"]["caps"]
    res["marked_ct"] = ix["m"]["ct"][0]
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    (out_dir / "data" / "index.json").write_bytes(explorer_index_bytes(ix))
    print(json.dumps(res))
''')


@pytest.fixture(scope="module")
def fake_vocab(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake-vocab")
    env = dict(os.environ, PYTHONPATH=str(ROOT), KNOLLM_CACHE_DIR=str(out / "cache"))
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT), str(FIXTURE_DUMPS), str(out / "site"), FAKE],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.splitlines()[-1]), out / "site"


def test_real_vocabulary_is_consistent():
    from knollm import vocab
    from knollm.catalog import schema

    assert schema.CAPABILITIES is vocab.CAPABILITIES and schema.PRICE_FIELDS is vocab.PRICE_FIELDS
    assert list(schema.Capabilities.model_fields) == list(vocab.CAPABILITIES)
    assert list(schema.Prices.model_fields) == list(vocab.PRICE_FIELDS)
    assert [vocab.CAPABILITY_BIT[c] for c in vocab.CAPABILITIES] == [1 << i for i in range(len(vocab.CAPABILITIES))]
    assert "fine_tuning" in vocab.CAPABILITIES
    j = vocab.as_json()
    assert [c["key"] for c in j["caps"]] == list(vocab.CAPABILITIES)
    assert [s["key"] for s in j["sources"]] == list(vocab.SOURCES)


def test_vocab_does_not_import_pydantic():
    code = "import sys, knollm.vocab, knollm.cli.filters; print('pydantic' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"


def test_compare_has_every_capability():
    from knollm.cli.cmd_compare import COMPARE_FIELDS
    from knollm.vocab import CAPABILITIES

    assert [f for f in COMPARE_FIELDS if f.startswith("capabilities.")] == [f"capabilities.{c}" for c in CAPABILITIES]


def test_fake_capability_reaches_cli_schema_and_site(fake_vocab):
    res, _ = fake_vocab
    assert res["vocab_caps"][-1] == "holography"
    # CLI filter: accepted (nothing in the data has it yet: exit 1 "no models"), a bogus one is a usage error
    assert "holography" in res["help"]
    rc, _, err = res["filter_ok"]
    assert rc in (0, 1) and "not one of" not in err, err
    rc, _, err = res["filter_bad"]
    assert rc == 2 and "holography" in err  # the error lists the valid choices, the new one among them
    assert res["search_caps"][-1] == "holography"  # the CLI's index carries it
    # compare
    assert "capabilities.holography" in res["compare_fields"]
    assert "capabilities.holography" in res["compare_text"]
    # schema (strict bool | None, like the others)
    assert res["schema_caps"][-1] == "holography" and res["model_rejects_str"]
    # site matrix: a column headed by its label
    assert '<th title="holography (test)">holography (test)</th>' in res["matrix"]
    # explorer index: vocab and the bit of the marked model
    last = res["index_vocab_caps"][-1]
    n = len(res["vocab_caps"])
    assert last == {"key": "holography", "label": "holography (test)", "abbr": "Ω", "bit": 1 << (n - 1)}
    assert res["marked_ct"] & last["bit"]


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.browser
def test_fake_capability_reaches_the_javascript(fake_vocab):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    res, site = fake_vocab
    assets = site / "assets" / "knollm"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "knollm.js").write_bytes((ROOT / "knollm" / "site" / "assets" / "knollm.js").read_bytes())
    (site / "explorer").mkdir(exist_ok=True)
    (site / "explorer" / "index.html").write_text(
        '<!doctype html><html><body><article><h1>Explorer</h1><div id="kn-explorer"></div></article>'
        '<script src="../assets/knollm/knollm.js"></script></body></html>')
    errors: list[str] = []
    with serve_static(site) as base, sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            pg = b.new_page()
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.goto(base + "explorer/")
            pg.wait_for_selector("#kn-explorer[data-ready]")
            pg.click("#kn-f-caps .kn-facet-btn")
            label = pg.inner_text('label:has(input[data-facet="cap"][value="holography"])')
            assert label.strip() == "holography (test)"
            pg.check('input[data-facet="cap"][value="holography"]')
            pg.wait_for_function("() => window.Knollm.lastCount === 1")
            keys = pg.eval_on_selector_all("#kn-results tbody tr", "t => t.map(r => r.getAttribute('data-key'))")
            assert keys == [res["marked"]]
            abbrs = pg.eval_on_selector_all("#kn-results tbody tr .kn-caps abbr",
                                            "a => a.map(x => [x.textContent, x.title])")
            assert ["Ω", "holography (test)"] in abbrs
        finally:
            b.close()
    assert errors == []
