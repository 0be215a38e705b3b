"""The GitHub workflows: schema-valid, zizmor-clean (both offline), and wired as the issue asks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WF = REPO / ".github" / "workflows"
CI, REFRESH = WF / "ci.yml", WF / "refresh.yml"


def _tool(name: str) -> str | None:
    here = Path(sys.executable).parent / name
    return str(here) if here.exists() else shutil.which(name)


def _load(path: Path) -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the workflows")
    doc = yaml.safe_load(path.read_text())
    if True in doc:  # PyYAML reads the key `on` as the boolean True
        doc["on"] = doc.pop(True)
    return doc


def test_workflows_exist():
    assert CI.is_file() and REFRESH.is_file()


def test_check_jsonschema_offline():
    exe = _tool("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema is not installed (pip install check-jsonschema)")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", str(CI), str(REFRESH)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_offline_finds_nothing(persona):
    exe = _tool("zizmor")
    if exe is None:
        pytest.skip("zizmor is not installed (pip install zizmor)")
    proc = subprocess.run([exe, "--offline", "--no-progress", f"--persona={persona}", str(WF)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _uses(doc: dict) -> list[str]:
    return [s["uses"] for job in doc["jobs"].values() for s in job.get("steps", []) if "uses" in s]


def test_actions_are_pinned_by_sha():
    for path in (CI, REFRESH):
        for ref in _uses(_load(path)):
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref), f"{path.name}: {ref} is not SHA-pinned"


def test_ci_runs_the_local_ci_command_on_push_and_pr():
    doc = _load(CI)
    assert {"push", "pull_request"} <= set(doc["on"])
    runs = [s.get("run", "") for job in doc["jobs"].values() for s in job["steps"]]
    assert any(r.strip() == "bash .ci/run" for r in runs)


def test_refresh_pipeline_shape():
    doc = _load(REFRESH)
    assert "schedule" in doc["on"] and "workflow_dispatch" in doc["on"]
    assert doc["concurrency"]["cancel-in-progress"] is False
    jobs = doc["jobs"]
    assert jobs["build"]["needs"] == "refresh" and jobs["deploy"]["needs"] == "build"
    assert doc["permissions"] == {}
    assert jobs["refresh"]["permissions"] == {"contents": "write"}
    assert jobs["deploy"]["permissions"] == {"pages": "write", "id-token": "write"}
    assert jobs["deploy"]["environment"]["name"] == "github-pages"
    text = REFRESH.read_text()
    assert "actions/upload-pages-artifact@" in text and "actions/deploy-pages@" in text
    for cmd in ("knollm fetch", "knollm diff", "knollm build", "git commit", "GITHUB_STEP_SUMMARY"):
        assert cmd in text, cmd
    assert jobs["build"]["steps"][0]["with"]["ref"] == "${{ needs.refresh.outputs.sha }}"


def test_refresh_passes_every_provider_key_from_secrets():
    from knollm.fetch import load_registry

    reg = load_registry()
    steps = _load(REFRESH)["jobs"]["refresh"]["steps"]
    fetch = next(s for s in steps if "knollm fetch" in s.get("run", ""))
    env = fetch["env"]
    for spec in reg.providers.values():
        if spec.enabled and not spec.manual and spec.auth != "none":  # a public list needs no key
            for name in spec.key_env:
                assert env.get(name) == f"${{{{ secrets.{name} }}}}", name
    # keys reach no other step
    others = [s for s in steps if s is not fetch]
    assert not any("secrets." in str(s) for s in others)
