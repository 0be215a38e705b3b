"""Quality scores from Artificial Analysis' keyed data API, against a loopback server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from knollm.errors import FetchError
from knollm.fetch.scores import KEY_ENV, SCORES_FILE, fetch_scores, load_scores

KEY = "aa-test-KEY-93ab"
# the shape of GET /api/v2/data/llms/models in Artificial Analysis' public API documentation
ANSWER = {"status": 200, "data": [
    {"id": "2dad8957-4c16-4e74-bf2d-8b21514e0ae9", "name": "Llama 3.3 Instruct 70B", "slug": "llama-3-3-instruct-70b",
     "model_creator": {"id": "e1694725", "name": "Meta", "slug": "meta"},
     "evaluations": {"artificial_analysis_intelligence_index": 27.9, "artificial_analysis_coding_index": 19.2,
                     "mmlu_pro": 0.713, "gpqa": None},
     "pricing": {"price_1m_blended_3_to_1": 0.62, "price_1m_input_tokens": 0.59, "price_1m_output_tokens": 0.7},
     "median_output_tokens_per_second": 118.4, "median_time_to_first_token_seconds": 0.41},
    {"id": "x", "name": "<b>Bold</b> model", "model_creator": {"name": "Acme"}, "evaluations": {}},
    {"name": "no id: skipped"},
]}


@pytest.fixture
def aa_server():
    seen = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):  # noqa: N802
            seen.append(dict(self.headers))
            ok = self.headers.get("x-api-key") == KEY
            body = json.dumps(ANSWER if ok else {"error": "Invalid API key"}).encode()
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/api/v2/data/llms/models", seen
    srv.shutdown()
    srv.server_close()


def test_scores_are_fetched_with_the_key_and_shown_with_attribution(aa_server, tmp_path):
    url, seen = aa_server
    path = fetch_scores(tmp_path, env={KEY_ENV: KEY}, url=url)
    assert path == tmp_path / SCORES_FILE and KEY not in path.read_text()
    doc = load_scores(tmp_path)
    assert [m["name"] for m in doc["models"]] == ["Llama 3.3 Instruct 70B", "<b>Bold</b> model"]
    llama = doc["models"][0]
    assert llama["evaluations"] == {"artificial_analysis_intelligence_index": 27.9,
                                    "artificial_analysis_coding_index": 19.2, "mmlu_pro": 0.713}
    assert llama["creator"] == "Meta" and llama["median_output_tokens_per_second"] == 118.4
    assert doc["attribution"] == "https://artificialanalysis.ai/" and doc["fetched_at"]

    from knollm.site.measured import load_measured, render_measured_page

    page = render_measured_page(load_measured(tmp_path))
    assert "Quality scores (Artificial Analysis)" in page and 'href="https://artificialanalysis.ai/"' in page
    assert "&lt;b&gt;Bold&lt;/b&gt; model" in page and "<b>Bold</b>" not in page
    assert page.index("Llama 3.3") < page.index("Bold")  # by intelligence index


def test_no_key_fetches_nothing_and_hides_the_table(aa_server, tmp_path):
    url, seen = aa_server
    assert fetch_scores(tmp_path, env={}, url=url) is None and seen == []
    from knollm.site.measured import load_measured, render_measured_page

    assert "Quality scores" not in render_measured_page(load_measured(tmp_path))


def test_a_bad_key_is_a_clear_error_without_the_key(aa_server, tmp_path):
    url, _ = aa_server
    with pytest.raises(FetchError) as e:
        fetch_scores(tmp_path, env={KEY_ENV: "wrong-key-value"}, url=url)
    assert "HTTP 401" in str(e.value) and KEY_ENV in str(e.value) and "wrong-key-value" not in str(e.value)
    assert not (tmp_path / SCORES_FILE).exists()
