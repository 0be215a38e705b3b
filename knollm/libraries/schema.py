"""The schema of one library file in ``work/api_inference/`` and of the measurements.

Every feature cell says how it was established (``how``) and where (``ref``):

* ``docs``     — the library's documentation says so (``ref`` is the URL)
* ``source``   — read in the library's source code (``ref`` is the file / URL)
* ``tested``   — a test in this repository proves it (``ref`` is the test id)
* ``measured`` — produced by ``scripts/measure_libraries.py``
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "FEATURES",
    "FEATURE_LABELS",
    "CATEGORIES",
    "USE_CASES",
    "COVERS",
    "COVER_OF_FEATURE",
    "Cell",
    "Features",
    "Example",
    "Library",
    "Measurement",
    "Measurements",
    "SecurityNote",
    "Check",
    "Checks",
    "EXAMPLE_RUNS",
]

SCHEMA_VERSION = 1

FEATURE_LABELS: dict[str, str] = {
    "async": "Async",
    "streaming": "Streaming",
    "tool_calling": "Tool calling",
    "structured_output": "Structured output",
    "multi_provider": "Multi-provider",
    "retries": "Retries",
    "typed_responses": "Typed responses",
    "local_models": "Local models",
    "observability_hooks": "Observability hooks",
}
FEATURES: tuple[str, ...] = tuple(FEATURE_LABELS)

CATEGORIES: dict[str, str] = {
    "raw-http": "Raw HTTP",
    "provider-sdk": "Provider SDK",
    "gateway": "Multi-provider gateway",
    "structured-output": "Structured output",
    "agent-framework": "Agent framework",
    "constrained-generation": "Constrained generation",
}

USE_CASES: dict[str, str] = {
    "minimal-dependencies": "Few dependencies, one-off scripts, serverless cold starts",
    "single-provider-app": "A production app on one provider's API",
    "switch-providers": "Switching providers (or falling back) without rewriting code",
    "structured-extraction": "Extracting typed data (JSON / Pydantic) from text",
    "agents-and-tools": "Agents that call tools in a loop",
    "rag": "Retrieval-augmented generation over your documents",
    "local-models": "Running open models locally (in-process or a local server)",
    "constrained-decoding": "Guaranteeing output grammar (regex, JSON schema, CFG) at decode time",
    "high-concurrency": "Many concurrent requests from async code",
    "gateway-observability": "Central routing, budgets, logging and tracing of LLM calls",
}

COVERS = ("chat", "streaming", "tool_call", "structured_output", "typed")

# which feature cell a covered example step can prove ("tested"); what each step must show is
# checked by tests/test_library_examples.py: streaming = several chunks received, tool_call = a
# tool-call round trip (the result sent back, the model's answer read), typed = the reply asserted
# to be an instance of the library's response class
COVER_OF_FEATURE = {"streaming": "streaming", "tool_calling": "tool_call", "structured_output": "structured_output",
                    "typed_responses": "typed"}

How = Literal["docs", "source", "tested", "measured"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Cell(_Strict):
    """One sourced fact. ``value`` is ``None`` when it is unknown."""

    value: bool | None
    how: How
    ref: str = Field(min_length=1)
    note: str | None = None

    @model_validator(mode="after")
    def _ref_matches_how(self) -> "Cell":
        if self.how == "docs" and not self.ref.startswith("https://"):
            raise ValueError(f"a 'docs' cell needs an https:// documentation URL as ref, got {self.ref!r}")
        if self.how == "tested" and not self.ref.startswith("tests/"):
            raise ValueError(f"a 'tested' cell needs a test id (tests/...::name) as ref, got {self.ref!r}")
        return self


class Features(_Strict):
    async_: Cell = Field(alias="async")
    streaming: Cell
    tool_calling: Cell
    structured_output: Cell
    multi_provider: Cell
    retries: Cell
    typed_responses: Cell
    local_models: Cell
    observability_hooks: Cell

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    def cell(self, name: str) -> Cell:
        if name not in FEATURE_LABELS:
            raise KeyError(name)
        return getattr(self, "async_" if name == "async" else name)

    def items(self) -> list[tuple[str, Cell]]:
        return [(f, self.cell(f)) for f in FEATURES]


EXAMPLE_RUNS: dict[str, str] = {
    "main": "run by tests/test_library_examples.py in the main test environment",
    "own-venv": "run by tests/test_library_examples.py in its own venv (.ci/install builds it from PyPI)",
    "not-run": "not run here",
}


class Example(_Strict):
    """A minimal example. No placeholders: the code reads ``OPENAI_BASE_URL`` /
    ``OPENAI_API_KEY`` (or ``ANTHROPIC_BASE_URL`` / ``ANTHROPIC_API_KEY`` when ``api``
    is ``anthropic``) from the environment, which the test suite points at its
    local server."""

    language: Literal["python", "bash"]
    code: str = Field(min_length=1)
    covers: list[Literal["chat", "streaming", "tool_call", "structured_output", "typed"]]
    requires: list[str] = Field(default_factory=list, description="pip requirements to run it")
    imports: list[str] = Field(default_factory=list, description="modules that must import for it to run")
    targets_base_url: bool
    api: Literal["openai", "anthropic"] = Field(
        default="openai", description="wire API the example speaks (its base URL env var follows)")
    runs: Literal["main", "own-venv", "not-run"] = Field(
        default="main", description="where the test suite runs it; 'not-run' examples prove nothing")
    not_run_reason: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _runs_consistent(self) -> "Example":
        if self.runs == "not-run" and not self.not_run_reason:
            raise ValueError("an example that is not run needs not_run_reason")
        if self.runs != "not-run" and not self.targets_base_url:
            raise ValueError("an example that cannot target a base URL cannot run here: runs must be 'not-run'")
        return self

    @field_validator("covers")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("covers has duplicates")
        return v


class SecurityNote(_Strict):
    """A known compromised or yanked release, or an advisory, with its source."""

    kind: Literal["compromised", "yanked", "advisory"]
    versions: str = Field(min_length=1, description="affected versions, as the source states them")
    summary: str = Field(min_length=1)
    sources: list[str] = Field(min_length=1)
    checked: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="when the sources were read")
    note: str | None = None

    @field_validator("sources")
    @classmethod
    def _https(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not s.startswith("https://")]
        if bad:
            raise ValueError(f"security sources must be https:// URLs, got {bad}")
        return v


class Library(_Strict):
    schema_version: Literal[1]
    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1)
    pypi: str | None = Field(description="PyPI distribution name; None for curl")
    module: str | None = Field(description="the main module whose import is timed")
    category: Literal["raw-http", "provider-sdk", "gateway", "structured-output", "agent-framework",
                      "constrained-generation"]
    summary: str = Field(min_length=1)
    homepage: str = Field(pattern=r"^https://")
    docs: str = Field(pattern=r"^https://")
    repository: str | None = Field(default=None, pattern=r"^https://")
    openai_compatible_base_url: Cell = Field(
        description="can be pointed at any OpenAI-compatible server by base URL")
    features: Features
    pros: list[str] = Field(min_length=1)
    cons: list[str] = Field(min_length=1)
    use_cases: list[str] = Field(min_length=1)
    example: Example
    security: list[SecurityNote] = Field(
        default_factory=list, description="known compromised/yanked releases and advisories (sourced)")
    security_reviewed: str | None = Field(
        default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
        description="when the advisory sources were last searched for this library")

    @field_validator("use_cases")
    @classmethod
    def _known_use_cases(cls, v: list[str]) -> list[str]:
        unknown = [u for u in v if u not in USE_CASES]
        if unknown:
            raise ValueError(f"unknown use case(s) {unknown}; known: {sorted(USE_CASES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "Library":
        if (self.pypi is None) != (self.module is None):
            raise ValueError("pypi and module are both set or both null")
        if self.example.runs == "not-run":
            cells = [("openai_compatible_base_url", self.openai_compatible_base_url)] + self.features.items()
            tested = [n for n, c in cells if c.how == "tested"]
            if tested:
                raise ValueError(f"the example is not run here, so no cell can be 'tested': {', '.join(tested)}")
        return self


class Measurement(BaseModel):
    """One library's measured facts (written by the script, so extra keys are allowed)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    python_package: bool = True
    pypi: str | None = None
    module: str | None = None
    version: str | None = None
    version_released: str | None = None  # upload date of that version on the index
    version_source: str | None = None  # how the version was chosen (the resolver, its Python)
    license: str | None = None
    requires_python: str | None = None
    direct_dependencies: int | None = None
    installed_distributions: int | None = None
    installed_size_bytes: int | None = None
    installed_size_mb: float | None = None
    import_time_ms: float | None = None
    import_first_run_ms: float | None = None
    entry_statement: str | None = None
    entry_import_ms: float | None = None
    measured_at: str | None = None
    error: str | None = None
    note: str | None = None


def effective_import_ms(m: Measurement | None) -> float | None:
    """What a program pays to start using the library: the larger of the bare
    module import and the entry statement (some packages import lazily)."""
    if m is None:
        return None
    vals = [v for v in (m.import_time_ms, m.entry_import_ms) if v is not None]
    return max(vals) if vals else None


class Measurements(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    measured_at: str
    python_version: str
    platform: str
    libraries: dict[str, Measurement]


class Check(BaseModel):
    """One library's entry of ``checks.json`` (written by ``knollm libraries check``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    slug: str
    pypi: str
    checked_at: str
    newest_version: str | None = None
    newest_released: str | None = None
    newest_source: str | None = None
    measured_version: str | None = None
    measured_released: str | None = None
    measured_at: str | None = None
    license: str | None = None
    requires_python: str | None = None
    requires_dist: list[str] = Field(default_factory=list)
    yanked: list[dict] = Field(default_factory=list)
    advisories: list[dict] = Field(default_factory=list)
    advisories_source: str | None = None
    findings: list[dict] = Field(default_factory=list)  # {"level", "field", "message"}
    error: str | None = None

    @property
    def contradictions(self) -> list[dict]:
        return [f for f in self.findings if f.get("level") == "contradiction"]


class Checks(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    checked_at: str
    libraries: dict[str, Check]
