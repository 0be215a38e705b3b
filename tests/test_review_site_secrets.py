"""Review fixes: provider strings stay text on the site's Markdown pages ("What changed", "Data
audit"), and secrets in a database URL's or a provider base URL's query / userinfo stay out of
messages."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from tests.support import site_fixtures as F

ROOT = Path(__file__).resolve().parents[1]
PAYLOAD = "[clickme](javascript:alert(document.domain))"


# --------------------------------------------------------------------------- the site
@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory) -> Path:
    """The real MkDocs build of a catalog with a model name and a model id that are Markdown
    links, a suspect value and a source disagreement on the latter, and a recorded diff."""
    from knollm.diff.compare import diff_catalogs, save_diff

    tmp = tmp_path_factory.mktemp("hostile_site")
    old = F.make_catalog(xss=False)
    new = F.make_catalog(xss=False)
    evil_name = dict(new["models"][0], key="alpha/evil-m", id="evil-m", name="Evil " + PAYLOAD,
                     canonical_id="evil-m")
    evil_id = dict(new["models"][1], key="alpha/" + PAYLOAD, id=PAYLOAD, name="x", canonical_id="evil2",
                   suspect={"prices.input": "too_high"},
                   alternatives={"prices.output": {"models.dev": 99.0}})
    new["models"] += [evil_name, evil_id]
    dumps = tmp / "dumps"
    (dumps / "changes").mkdir(parents=True)
    save_diff(diff_catalogs(old, new), dumps / "changes")
    docs = tmp / "docs"
    docs.mkdir()
    for name in F.PAGES:
        (docs / name).write_text((F.DOCS / name).read_text(encoding="utf-8"), encoding="utf-8")
    cat_path = tmp / "catalog.json"
    cat_path.write_bytes(orjson.dumps(new))
    site = tmp / "site"
    cfg = tmp / "mkdocs.yml"
    cfg.write_text(F.MKDOCS_TEMPLATE.format(docs=docs, site=site, catalog=cat_path).replace(
        "      catalog:", f"      dumps: {dumps}\n      catalog:")
        + "  - Changes: changes.md\n  - Audit: audit.md\n", encoding="utf-8")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    build(load_config(str(cfg)))
    return site


def _cells(page: str) -> list[str]:
    return re.findall(r"<td>(.*?)</td>", page, flags=re.S)


def test_changes_page_shows_a_markdown_link_in_a_model_name_as_text(hostile_site):
    page = (hostile_site / "changes" / "index.html").read_text(encoding="utf-8")
    assert 'href="javascript:' not in page and "<a href=\"javascript" not in page
    assert "Evil " + PAYLOAD in _cells(page)  # the name, literally, in its cell


def test_audit_page_shows_a_markdown_link_in_a_model_id_as_text(hostile_site):
    page = (hostile_site / "audit" / "index.html").read_text(encoding="utf-8")
    assert 'href="javascript:' not in page
    cells = _cells(page)
    # the suspect-values table and the disagreements table: the id literally, twice
    assert cells.count("alpha/" + PAYLOAD) == 2, [c for c in cells if "clickme" in c]
    assert any(c.startswith("prices.output") for c in cells)


def test_md_text_keeps_table_cells_and_links_as_text():
    import markdown

    from knollm.site.render import md_text

    src = f"| a | b |\n|---|---|\n| {md_text(PAYLOAD + ' x|y <b>')} | {md_text('`c` *d*')} |\n"
    out = markdown.markdown(src, extensions=["tables", "md_in_html"])
    assert "<a " not in out and "<b>" not in out
    assert f"<td>{PAYLOAD} x|y &lt;b&gt;</td>" in out and "<td>`c` *d*</td>" in out


# --------------------------------------------------------------------------- database URL
def test_usage_masks_a_password_in_the_database_url_query(tmp_path):
    """libpq reads ``?password=`` / ``?sslpassword=``: ``knollm usage`` (no server on port 1) names
    the URL in its error with them masked."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KNOLLM_HOME": str(tmp_path),
           "KNOLLM_DATABASE_URL": "postgresql://u:userinfoPW@127.0.0.1:1/db?connect_timeout=2"
                                  "&password=secretQP&sslpassword=secretSSL"}
    p = subprocess.run([sys.executable, "-m", "knollm", "usage"], capture_output=True, text=True, env=env,
                       timeout=120, cwd=tmp_path)
    blob = p.stdout + p.stderr
    assert "127.0.0.1:1/db" in blob, blob  # the URL is named (the connection failed)
    for secret in ("secretQP", "secretSSL", "userinfoPW"):
        assert secret not in blob, blob
    assert "password=***" in blob and "sslpassword=***" in blob


def test_redact_url_forms():
    from knollm.gateway.db import redact_url

    assert redact_url("postgresql://u:secret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgres://u@h/db?sslmode=require&PassWord=a1&pass%77ord=a2&application_name=x") == \
        "postgres://u@h/db?sslmode=require&PassWord=***&pass%77ord=***&application_name=x"
    assert redact_url("postgresql:///db?host=/run/pg&password=zz") == "postgresql:///db?host=/run/pg&password=***"
    assert "ab" not in redact_url("postgresql://u@h/db?password=ab#cd").split("?")[1]
    assert redact_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


# --------------------------------------------------------------------------- provider base URL
class _EchoPath(http.server.BaseHTTPRequestHandler):
    """Answers every POST 400 with the request path in the message (as providers do)."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps({"error": {"message": f"Invalid URL (POST {self.path}) "
                                                f"auth={self.headers.get('authorization')}",
                                     "type": "invalid_request_error"}}).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a: object) -> None:
        pass


@pytest.fixture(scope="module")
def echo_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoPath)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_chat_error_does_not_echo_a_secret_in_the_base_url(echo_server, tmp_path):
    """``KNOLLM_GROQ_BASE_URL=…/v1?key=…`` (as Gemini takes keys): the provider's 400 echoes the
    path, key included; ``knollm chat --json`` shows the error with the key masked."""
    base = "http://127.0.0.1:{port}/v1?key=sk-urlsecret-1"
    from tests.support.client_fixtures import catalog, model

    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(catalog(model("groq", "llama-3.3-70b-versatile"))))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KNOLLM_HOME": str(tmp_path / "home"),
           "GROQ_API_KEY": "gsk-keyvalue-2", "KNOLLM_GROQ_BASE_URL": base.format(port=echo_server)}
    p = subprocess.run([sys.executable, "-m", "knollm", "chat", "groq/llama-3.3-70b-versatile", "hi", "--json",
                        "--no-stream", "--catalog", str(cat)], capture_output=True, text=True, env=env,
                       timeout=120, cwd=tmp_path)
    blob = p.stdout + p.stderr
    assert p.returncode == 1, blob
    d = json.loads(p.stdout)
    assert any("Invalid URL" in (a.get("message") or "") for a in d["attempts"]), d  # the echo came back
    assert "sk-urlsecret-1" not in blob and "gsk-keyvalue-2" not in blob, blob


def test_redact_masks_a_base_url_password_and_query_values():
    from types import SimpleNamespace

    from knollm.client.routing import Offer, Plan, Router, Settings

    base = "http://user:sk-urlsecret-1@127.0.0.1:9/v1?api-version=2024-02-01&token=tok%2Fen-3"
    r = Router(None, Settings(), env={"GROQ_API_KEY": "gsk-keyvalue-2", "KNOLLM_GROQ_BASE_URL": base})
    deps, why = r.deployments(Offer("groq/m", "groq", "m"))
    assert deps and why is None
    text = Plan.redact(SimpleNamespace(r=r), f"POST {base} (token tok/en-3) Bearer gsk-keyvalue-2")
    assert "sk-urlsecret-1" not in text and "tok/en-3" not in text and "tok%2Fen-3" not in text
    assert "gsk-keyvalue-2" not in text
    assert "api-version=2024-02-01" in text and "http://user:***@127.0.0.1:9/v1" in text
