"""Every library example on the site runs against a real local OpenAI-compatible server.

The example code is taken from the library's data file (``work/api_inference/``),
written to a temporary directory and run in a fresh process with
``OPENAI_BASE_URL`` (and ``ANTHROPIC_BASE_URL`` for the Anthropic SDK, which the
server also answers on ``/v1/messages``) pointing at
:class:`tests.support.openai_server.OpenAIServer` on 127.0.0.1. What the example ``covers`` is checked both on its output and on
the requests the server recorded:

* chat              the server's deterministic reply is printed
* streaming         a ``"stream": true`` request was answered in several chunks, the
                    example printed how many it received (``chunks: N``, N > 1) and the
                    text (or object) they assemble to
* tool_call         a round trip: a request with ``tools`` got a tool call, a later
                    request carried the result for that call id (``role: tool`` or an
                    Anthropic ``tool_result`` block) and the model's answer to it
                    (``The tool said: Sunny in Paris``) was printed as ``tool_result:``
* structured_output a request with ``tools`` or ``response_format`` was made and the
                    parsed object (city Paris) printed
* typed             the example asserted the reply's class with ``isinstance`` and
                    printed it (``typed: ClassName``, not a dict or str)

A cell marked "tested" must name this test and an example that covers the feature;
examples marked ``runs: not-run`` have no tested cell (the schema refuses it).

A library that is not installed is skipped with the reason. Examples run with
``sys.executable`` unless ``KNOLLM_EXAMPLES_PYTHON`` names another interpreter;
an example with ``runs: own-venv`` runs with ``KNOLLM_EXAMPLES_VENVS/<slug>/bin/python``
(default ``.venv/examples/<slug>``, built from PyPI by ``.ci/install``) when it exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from knollm.libraries.load import load_libraries
from knollm.libraries.schema import COVER_OF_FEATURE
from tests.support.openai_server import REPLY_PREFIX, OpenAIServer

RECORDS = {r.slug: r for r in load_libraries()}
RUNNABLE = sorted(s for s, r in RECORDS.items()
                  if r.library.example.targets_base_url and r.library.example.runs != "not-run")
PYTHON = os.environ.get("KNOLLM_EXAMPLES_PYTHON") or sys.executable
VENVS = Path(os.environ.get("KNOLLM_EXAMPLES_VENVS") or Path(__file__).resolve().parents[1] / ".venv" / "examples")
TIMEOUT = 240
# the server answers a tool result with "The tool said: <result>" (some clients JSON-encode the result)
ROUND_TRIP_ANSWER = re.compile(r'The tool said: \\?"?Sunny in Paris')
UNTYPED = {"dict", "str", "list", "tuple", "NoneType", "bytes", "object", "Any"}


def python_for(slug: str) -> str:
    """The interpreter an example runs with: its own venv for ``runs: own-venv``."""
    if RECORDS[slug].library.example.runs == "own-venv":
        own = VENVS / slug / "bin" / "python"
        if own.exists():
            return str(own)
    return PYTHON


@pytest.fixture(scope="module")
def openai_server():
    with OpenAIServer() as server:
        yield server


def _missing_imports(modules: list[str], python: str = PYTHON) -> list[str]:
    if not modules:
        return []
    code = ("import importlib, sys\nmissing = []\nfor m in sys.argv[1:]:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as exc:\n        missing.append(f'{m} ({type(exc).__name__}: {exc})')\n"
            "print('\\n'.join(missing))")
    out = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, timeout=TIMEOUT)
    return [line for line in out.stdout.splitlines() if line.strip()]


def _lines(stdout: str, label: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith(label + ":")]


@pytest.mark.parametrize("slug", RUNNABLE)
def test_example(slug: str, openai_server: OpenAIServer, tmp_path) -> None:
    lib = RECORDS[slug].library
    ex = lib.example
    if ex.language == "bash":
        if shutil.which("curl") is None or shutil.which("bash") is None:
            pytest.skip("curl or bash is not installed")
        path = tmp_path / "example.sh"
        cmd = ["bash", str(path)]
    else:
        python = python_for(slug)
        missing = _missing_imports(ex.imports or ([lib.module] if lib.module else []), python)
        if missing:
            where = f" (its own venv: {VENVS / slug}, built by .ci/install)" if ex.runs == "own-venv" else ""
            pytest.skip(f"{lib.pypi} not installed{where} ({'; '.join(missing)}); "
                        f"pip install {' '.join(ex.requires)}")
        path = tmp_path / "example.py"
        cmd = [python, str(path)]
    path.write_text(ex.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "PORTKEY_"))}
    env.update({
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-knollm-test",
        # the Anthropic SDK appends /v1/messages itself
        "ANTHROPIC_BASE_URL": openai_server.base_url.removesuffix("/v1"),
        "ANTHROPIC_API_KEY": "sk-knollm-test",
        # litellm otherwise tries to fetch its price map from the internet on first use
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    })
    openai_server.clear()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{slug} example failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    out = proc.stdout
    chats = [r for r in openai_server.requests if r["method"] == "POST"
             and r["path"].split("?")[0].rstrip("/").endswith(("/chat/completions", "/responses", "/messages"))]
    assert chats, f"{slug}: the example made no chat request to the local server"
    for r in chats:
        sent = r["headers"].get("authorization") == "Bearer sk-knollm-test" \
            or r["headers"].get("x-api-key") == "sk-knollm-test"
        assert sent, f"{slug}: API key not sent"

    if "chat" in ex.covers:
        if ex.language == "bash":
            assert REPLY_PREFIX in out
        else:
            assert any(REPLY_PREFIX in line for line in _lines(out, "chat")), out
    if "streaming" in ex.covers:
        streamed_requests = [r for r in chats if (r["json"] or {}).get("stream") is True]
        assert streamed_requests, f"{slug}: no streaming request"
        assert max(r.get("sent_chunks", 0) for r in streamed_requests) > 1, f"{slug}: the stream had one chunk"
        if ex.language == "bash":
            assert out.count("data: {") > 1 and "data: [DONE]" in out, out
        else:
            counts = [int(m) for m in re.findall(r"^chunks: (\d+)\s*$", out, re.M)]
            assert counts and max(counts) > 1, f"{slug}: the example did not report several chunks received\n{out}"
            streamed = _lines(out, "stream")
            assert streamed and (REPLY_PREFIX + "Say hello" in streamed[0] or "Paris" in streamed[0]), out
    if "tool_call" in ex.covers:
        assert any((r["json"] or {}).get("tools") for r in chats), f"{slug}: no request with tools"
        issued = set(openai_server.issued_tool_calls)
        returned = _tool_results(chats)
        assert issued & returned, (f"{slug}: no request sent a tool result back for a call the server made "
                                   f"(issued {sorted(issued)}, results for {sorted(returned)})")
        answer = _lines(out, "tool_result") if ex.language != "bash" else [out]
        assert any(ROUND_TRIP_ANSWER.search(line) for line in answer), f"{slug}: the answer to the tool result was not read\n{out}"
    if "structured_output" in ex.covers:
        assert any((r["json"] or {}).get("tools") or (r["json"] or {}).get("response_format") for r in chats)
        label = "structured" if _lines(out, "structured") else "tool"
        assert any("Paris" in line for line in _lines(out, label)), out
    if "typed" in ex.covers:
        typed = [line.split(":", 1)[1].split() for line in _lines(out, "typed")]
        assert typed and typed[0], f"{slug}: no 'typed: ClassName' line\n{out}"
        assert typed[0][0] not in UNTYPED, f"{slug}: the reply is a plain {typed[0][0]}, not a typed object"
        assert "isinstance(" in ex.code, f"{slug}: the example does not assert the reply's type"


def _tool_results(chats: list[dict]) -> set[str]:
    """Tool-call ids whose results a request carried back (OpenAI role=tool, Anthropic tool_result)."""
    ids = set()
    for r in chats:
        for m in (r["json"] or {}).get("messages") or []:
            if m.get("role") == "tool" and m.get("tool_call_id"):
                ids.add(m["tool_call_id"])
            content = m.get("content")
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    ids.add(str(block.get("tool_use_id", "")).removeprefix("toolu_"))
    return ids


def test_tested_cells_point_at_a_covering_example() -> None:
    """A cell marked ``tested`` must name this file's test for that library, and the
    example must cover the feature (or target a base URL for base-URL/local cells)."""
    problems = []
    for slug, rec in RECORDS.items():
        lib = rec.library
        expected = f"tests/test_library_examples.py::test_example[{slug}]"
        cells = [("openai_compatible_base_url", lib.openai_compatible_base_url)] + lib.features.items()
        for name, cell in cells:
            if cell.how != "tested":
                continue
            if cell.ref != expected:
                problems.append(f"{slug}.{name}: ref {cell.ref!r} is not {expected!r}")
            if not lib.example.targets_base_url or lib.example.runs == "not-run":
                problems.append(f"{slug}.{name}: tested, but the example does not run here")
            cover = COVER_OF_FEATURE.get(name)
            if cover and cover not in lib.example.covers:
                problems.append(f"{slug}.{name}: tested, but the example does not cover {cover}")
    assert not problems, "\n".join(problems)
