"""``knollm chat`` and ``knollm usage`` against loopback servers (in-process and as a real process)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from knollm.cli import main
from tests.support.client_fixtures import CANON, catalog, model
from tests.support.provider_servers import ProviderServer

ROOT = Path(__file__).resolve().parents[1]
KEY, KEY2 = "gsk_cli_SECRET_5555aaaa", "csk_cli_SECRET_6666bbbb"


@pytest.fixture
def env(monkeypatch, tmp_path):
    g, c = ProviderServer("groq").start(), ProviderServer("cerebras").start()
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps(catalog(model("groq", "llama-3.3-70b-versatile"),
                                      model("cerebras", "llama-3.3-70b", input=1.5))))
    vals = {"KNOLLM_HOME": str(tmp_path / "home"), "KNOLLM_GROQ_BASE_URL": g.base_url,
            "KNOLLM_CEREBRAS_BASE_URL": c.base_url, "GROQ_API_KEY": KEY, "CEREBRAS_API_KEY": KEY2}
    for k, v in vals.items():
        monkeypatch.setenv(k, v)
    yield {"groq": g, "cerebras": c, "catalog": str(cat), "home": tmp_path / "home", "env": vals}
    g.stop()
    c.stop()


def test_strategy_choices_match_the_client():
    from knollm.cli.cmd_chat import STRATEGY_CHOICES
    from knollm.client import STRATEGIES

    assert STRATEGY_CHOICES == STRATEGIES


def test_chat_streams_then_json_and_usage(env, capsys):
    assert main(["chat", "groq/llama-3.3-70b-versatile", "hello you", "--catalog", env["catalog"]]) == 0
    out, err = capsys.readouterr()
    assert out == "Hello from groq! You said: hello you\n"
    assert "groq/llama-3.3-70b-versatile via GROQ_API_KEY · 120 in / 30 out · $0.000180" in err
    env["groq"].faults("503", "503", "503")
    assert main(["chat", CANON, "again", "--system", "be brief", "--max-tokens", "20", "--json",
                 "--catalog", env["catalog"]]) == 0
    out, err = capsys.readouterr()
    d = json.loads(out)
    assert (d["content"], d["provider"], d["model"]) == ("Hello from cerebras! You said: again", "cerebras",
                                                         "llama-3.3-70b")
    assert d["usage"] == {"input_tokens": 120, "output_tokens": 30, "cached_tokens": 0, "cache_write_tokens": 0,
                          "web_searches": 0, "estimated": False}
    assert d["cost_usd"] == pytest.approx((120 * 1.5 + 30 * 2) / 1e6) and d["price_source"] == "catalog:genai-prices"
    assert d["ttft_ms"] > 0 and d["duration_ms"] >= d["ttft_ms"]
    assert [(a["provider"], a["key"], a["status"], a["error"]) for a in d["attempts"]] == \
        [("groq", "GROQ_API_KEY", 503, "ProviderError")] * 3 + [("cerebras", "CEREBRAS_API_KEY", 200, None)]
    assert all(isinstance(a["duration_ms"], float) for a in d["attempts"])
    sent = env["cerebras"].requests[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "be brief"} and sent["max_tokens"] == 20

    assert main(["usage", "--json"]) == 0
    rows = {r["provider"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["groq"]["calls"] == rows["cerebras"]["calls"] == 1
    assert rows["groq"]["cost_usd"] == pytest.approx(0.00018) and rows["cerebras"]["input_tokens"] == 120
    assert main(["usage", "--by", "day", "--csv"]) == 0
    (row,) = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert row["calls"] == "2" and float(row["cost_usd"]) == pytest.approx(0.00018 + 0.00024)
    assert main(["usage", "--since", "2099-01-01"]) == 1


def test_chat_tag_and_usage_by_tag(env, capsys):
    cat = env["catalog"]
    for tag in ("nightly", "nightly", None):
        assert main(["chat", "groq/llama-3.3-70b-versatile", "hi", "--no-stream", "--catalog", cat]
                    + (["--tag", tag] if tag else [])) == 0
    assert main(["chat", "groq/llama-3.3-70b-versatile", "hi", "--tag", "a\tb", "--catalog", cat]) == 2
    assert "--tag" in capsys.readouterr().err
    assert all("tag" not in r["json"] for r in env["groq"].requests) and len(env["groq"].requests) == 3
    assert main(["usage", "--by", "tag", "--csv"]) == 0
    rows = {r["tag"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
    assert {t: r["calls"] for t, r in rows.items()} == {"nightly": "2", "(no tag)": "1"}
    assert main(["usage", "--tag", "nightly", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["provider"], row["calls"], row["input_tokens"]) == ("groq", 2, 240)
    assert main(["usage", "--tag", "other", "--json"]) == 1 and json.loads(capsys.readouterr().out) == []


def test_chat_reads_stdin_and_no_stream(env, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("from a pipe"))
    assert main(["chat", "groq/llama-3.3-70b-versatile", "-", "--no-stream", "--catalog", env["catalog"]]) == 0
    assert capsys.readouterr().out == "Hello from groq! You said: from a pipe\n"
    assert "stream" not in env["groq"].requests[-1]["json"]


def test_failures_exit_1_and_never_print_keys(env, capsys):
    env["groq"].default = "401"
    env["cerebras"].default = "500"
    assert main(["chat", CANON, "hi", "--catalog", env["catalog"]]) == 1
    out, err = capsys.readouterr()
    assert "all 4 attempt(s)" in err and "HTTP 500" in err
    env["cerebras"].default = "ok"
    assert main(["chat", CANON, "hi", "--json", "--catalog", env["catalog"]]) == 0
    out2, err2 = capsys.readouterr()
    assert main(["chat", "nope/unknown-model", "hi", "--catalog", env["catalog"]]) == 1
    out3, err3 = capsys.readouterr()
    assert "unknown target" in err3
    blob = out + err + out2 + err2 + out3 + err3
    for f in env["home"].iterdir():
        blob += f.read_bytes().decode("latin-1")
    assert KEY not in blob and KEY2 not in blob


def test_chat_as_a_real_process(env):
    e = {**os.environ, **env["env"], "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "knollm", "chat", "groq/llama-3.3-70b-versatile", "hi", "--json",
                        "--catalog", env["catalog"]], capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["content"] == "Hello from groq! You said: hi"
    assert KEY not in p.stdout + p.stderr


def test_json_errors_and_interrupted_stream(env, capsys):
    env["groq"].default = env["cerebras"].default = "503"
    assert main(["chat", CANON, "hi", "--json", "--catalog", env["catalog"]]) == 1
    d = json.loads(capsys.readouterr().out)
    assert d["error_class"] == "AllAttemptsFailed" and len(d["attempts"]) == 6
    assert {a["kind"] for a in d["attempts"]} == {"server"}
    env["groq"].default = env["cerebras"].default = "ok"
    env["cerebras"].requests.clear()
    env["groq"].faults("cut")
    assert main(["chat", CANON, "hi", "--catalog", env["catalog"]]) == 1
    out, err = capsys.readouterr()
    assert out == "Hello \n" and "StreamInterrupted" not in out and "after 6 chars of output" in err
    assert env["cerebras"].requests == []  # nothing repeated by a fallback
    # the cut stream is in the ledger, charged what the provider bills: knollm usage shows it
    assert main(["chat", CANON, "hi", "--catalog", env["catalog"]]) == 0
    capsys.readouterr()
    assert main(["usage", "--json"]) == 0
    (g,) = json.loads(capsys.readouterr().out)
    assert (g["provider"], g["calls"], g["interrupted_calls"], g["estimated_calls"]) == ("groq", 2, 1, 1)
    assert main(["usage", "--by", "outcome", "--json"]) == 0
    by = {r["outcome"]: r for r in json.loads(capsys.readouterr().out)}
    assert (by["interrupted"]["calls"], by["interrupted"]["output_tokens"]) == (1, 2)  # "Hello ": 2 tokens
    assert by["interrupted"]["cost_usd"] > 0 and (by["ok"]["calls"], by["ok"]["interrupted_calls"]) == (1, 0)
    assert main(["usage", "--by", "outcome"]) == 0
    assert "interrupted_calls" in capsys.readouterr().out
