"""Every library example on the site runs against a real local OpenAI-compatible server.

The example code is taken from the library's data file (``work/api_inference/``),
written to a temporary directory and run in a fresh process with
``OPENAI_BASE_URL`` (and ``ANTHROPIC_BASE_URL`` for the Anthropic SDK, which the
server also answers on ``/v1/messages``) pointing at
:class:`tests.support.openai_server.OpenAIServer` on 127.0.0.1. What the example ``covers`` is checked both on its output and on
the requests the server recorded:

* chat              the server's deterministic reply is printed
* streaming         a request with ``"stream": true`` was made and its text printed
* tool_call         a request with ``tools`` was made and the call (city Paris) printed
* structured_output a request with ``tools`` or ``response_format`` was made and the
                    parsed object (city Paris) printed

A library that is not installed is skipped with the reason. Examples run with
``sys.executable`` unless ``KNOLLM_EXAMPLES_PYTHON`` names another interpreter
(e.g. a venv holding a library that conflicts with the main one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from knollm.libraries.load import load_libraries
from knollm.libraries.schema import COVER_OF_FEATURE
from tests.support.openai_server import REPLY_PREFIX, OpenAIServer

RECORDS = {r.slug: r for r in load_libraries()}
RUNNABLE = sorted(s for s, r in RECORDS.items() if r.library.example.targets_base_url)
PYTHON = os.environ.get("KNOLLM_EXAMPLES_PYTHON") or sys.executable
TIMEOUT = 240


@pytest.fixture(scope="module")
def openai_server():
    with OpenAIServer() as server:
        yield server


def _missing_imports(modules: list[str]) -> list[str]:
    if not modules:
        return []
    code = ("import importlib, sys\nmissing = []\nfor m in sys.argv[1:]:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception as exc:\n        missing.append(f'{m} ({type(exc).__name__}: {exc})')\n"
            "print('\\n'.join(missing))")
    out = subprocess.run([PYTHON, "-c", code, *modules], capture_output=True, text=True, timeout=TIMEOUT)
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
        missing = _missing_imports(ex.imports or ([lib.module] if lib.module else []))
        if missing:
            pytest.skip(f"{lib.pypi} not installed ({'; '.join(missing)}); "
                        f"pip install {' '.join(ex.requires)}")
        path = tmp_path / "example.py"
        cmd = [PYTHON, str(path)]
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
        assert any((r["json"] or {}).get("stream") is True for r in chats), f"{slug}: no streaming request"
        if ex.language == "bash":
            assert "data: [DONE]" in out
        else:
            streamed = _lines(out, "stream")
            assert streamed and ("Paris" in streamed[0] or REPLY_PREFIX.split("!")[0] in streamed[0]), out
    if "tool_call" in ex.covers:
        assert any((r["json"] or {}).get("tools") for r in chats), f"{slug}: no request with tools"
        if ex.language == "bash":
            assert "get_weather" in out
        else:
            assert any("Paris" in line for line in _lines(out, "tool")), out
    if "structured_output" in ex.covers:
        assert any((r["json"] or {}).get("tools") or (r["json"] or {}).get("response_format") for r in chats)
        label = "structured" if _lines(out, "structured") else "tool"
        assert any("Paris" in line for line in _lines(out, label)), out


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
            if not lib.example.targets_base_url:
                problems.append(f"{slug}.{name}: tested, but the example does not run here")
            cover = COVER_OF_FEATURE.get(name)
            if cover and cover not in lib.example.covers:
                problems.append(f"{slug}.{name}: tested, but the example does not cover {cover}")
    assert not problems, "\n".join(problems)
