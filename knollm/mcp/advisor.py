"""``knollm advisor`` (and the ``knollm lock init --interactive`` hook): a conversation that
writes ``knollm.lock``.

1. It asks about use cases, volume, budget, capabilities, providers and privacy.
2. It proposes one alias per use case. With a usable advisor model (the ``advisor`` alias of
   a bootstrap lockfile, called through :class:`knollm.Client`) the model works through the
   tools of :class:`knollm.mcp.tools.KnollmTools` by tool calling; every model it proposes
   must have appeared in a tool result (others are dropped, with a note). Without one (no
   key, no local server, an error, a looping model) a deterministic guided flow calls the
   same tools and says so.
3. It shows each alias with its monthly cost (``get_cost_analysis``) and reasons, lets the
   user change them, shows the lockfile diff and writes it on confirmation
   (``create_lockfile_binding`` with ``confirm=true``).

``--answers FILE`` (JSON or TOML with the question keys, ``changes`` and ``confirm``) runs
it without a terminal. No model name appears in this module.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from knollm.errors import KnollmError
from knollm.mcp.tools import TOOL_NAMES, KnollmTools, price_units_text

__all__ = ["Answers", "Advisor", "TerminalIO", "ScriptedIO", "QUESTIONS", "load_answers", "openai_tools",
           "run_advisor", "interactive_init", "ADVISOR_ALIAS"]

ADVISOR_ALIAS = "advisor"
MAX_STEPS = 12          # model turns per proposal before it counts as looping
MAX_REPEATS = 3         # the same tool call this often = looping
RESULT_CHARS = 24_000   # a tool result sent back to the model is shortened to about this size


# ---------------------------------------------------------------------------- questions
@dataclasses.dataclass
class Answers:
    use_cases: list[str]
    requests_per_month: int
    budget_usd_month: float | None = None
    needs: list[str] = dataclasses.field(default_factory=list)
    providers: list[str] = dataclasses.field(default_factory=list)
    privacy: str = "any"

    @property
    def budget_per_1k(self) -> float | None:
        """The monthly budget as USD per 1,000 requests (what ``recommend`` takes)."""
        if self.budget_usd_month is None or not self.requests_per_month:
            return None
        return self.budget_usd_month * 1000 / self.requests_per_month

    def requests_per_alias(self) -> int:
        return max(1, self.requests_per_month // max(1, len(self.use_cases)))


def _csv(text: str) -> list[str]:
    return [x.strip() for x in str(text).replace(";", ",").split(",") if x.strip()]


def _parse_use_cases(text: str) -> list[str]:
    from knollm.query.recommend import USE_CASES

    got = _csv(text)
    bad = [u for u in got if u not in USE_CASES]
    if bad or not got:
        raise ValueError(f"choose one or more of {', '.join(USE_CASES)}" + (f" (not {', '.join(bad)})" if bad else ""))
    return list(dict.fromkeys(got))


def _parse_count(text: str) -> int:
    from knollm.query.cost import parse_count

    n = parse_count(text)
    if n <= 0:
        raise ValueError("give a number of requests above 0, e.g. 50k")
    return n


def _parse_budget(text: str) -> float | None:
    t = str(text).strip().lstrip("$")
    if t.lower() in ("", "none", "no", "-", "any"):
        return None
    v = float(t)
    if v < 0:
        raise ValueError("a budget cannot be negative")
    return v


def _parse_needs(text: str) -> list[str]:
    from knollm.vocab import CAPABILITIES

    got = [x for x in _csv(text) if x.lower() not in ("none", "-")]
    bad = [c for c in got if c not in CAPABILITIES]
    if bad:
        raise ValueError(f"unknown capability {', '.join(bad)}; known: {', '.join(CAPABILITIES)}")
    return got


def _parse_privacy(text: str) -> str:
    t = str(text).strip().lower() or "any"
    if t not in ("any", "local"):
        raise ValueError("answer any or local")
    return t


#: (key, question, parser); parsers raise ValueError with what to answer instead
QUESTIONS: list[tuple[str, str, Callable[[str], Any]]] = [
    ("use_cases", "Which use cases? Comma list of: {use_cases}", _parse_use_cases),
    ("requests_per_month", "How many requests per month, all use cases together? (e.g. 50k)", _parse_count),
    ("budget_usd_month", "Monthly budget in USD? (blank: no limit)", _parse_budget),
    ("needs", "Capabilities every model must have? Comma list of {capabilities} (blank: none)", _parse_needs),
    ("providers", "Only these providers? Comma list of provider ids (blank: any)", _csv),
    ("privacy", "Privacy: any, or local (only models served on this machine)? [any]", _parse_privacy),
]


# ---------------------------------------------------------------------------- I/O
class TerminalIO:
    """Questions on stdin/stdout (works under a pseudo-terminal)."""

    interactive = True

    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def ask(self, key: str, prompt: str) -> str:
        try:
            return input(f"{prompt}\n> ")
        except EOFError:
            return ""


class ScriptedIO(TerminalIO):
    """Answers from a dict (``--answers FILE``); the transcript still goes to ``say``."""

    interactive = False

    def __init__(self, answers: dict[str, Any], say: Callable[[str], None] | None = None) -> None:
        self.answers = dict(answers)
        self.changes = list(self.answers.get("changes") or [])
        self._say = say

    def say(self, text: str = "") -> None:
        (self._say or super().say)(text)

    def ask(self, key: str, prompt: str) -> str:
        if key == "change":
            v = self.changes.pop(0) if self.changes else ""
        elif key == "confirm":
            v = "yes" if self.answers.get("confirm") else "no"
        else:
            v = self.answers.get(key, "")
            if isinstance(v, list):
                v = ", ".join(map(str, v))
            v = "" if v is None else str(v)
        self.say(f"{prompt}\n> {v}")
        return v


def load_answers(path: str | Path) -> dict[str, Any]:
    """An answers file: JSON, or TOML when it ends in ``.toml``."""
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as e:
        raise KnollmError(f"{p}: cannot read answers file: {e.strerror}") from None
    try:
        if p.suffix == ".toml":
            import tomllib

            d = tomllib.loads(text)
        else:
            d = json.loads(text)
    except ValueError as e:
        raise KnollmError(f"{p}: not a valid answers file: {e}") from None
    if not isinstance(d, dict):
        raise KnollmError(f"{p}: an answers file is an object of question keys")
    known = {q[0] for q in QUESTIONS} | {"changes", "confirm"}
    bad = sorted(set(d) - known)
    if bad:
        raise KnollmError(f"{p}: unknown key(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    return d


# ---------------------------------------------------------------------------- tool schemas
def openai_tools(tools: KnollmTools) -> list[dict[str, Any]]:
    """The tools as OpenAI ``tools`` definitions (JSON Schema from each signature, the
    docstring as description) — the same signatures the MCP server publishes."""
    import inspect
    import typing

    import pydantic

    out = []
    for name, fn in tools.functions().items():
        hints = typing.get_type_hints(fn)
        fields = {p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default)
                  for p in inspect.signature(fn).parameters.values()}
        schema = pydantic.create_model(f"{name}_args", **fields).model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        doc = " ".join((fn.__doc__ or name).split())
        out.append({"type": "function", "function": {"name": name, "description": doc, "parameters": schema}})
    return out


# ---------------------------------------------------------------------------- the advisor
SYSTEM_PROMPT = """You are Knollm's advisor. You choose LLM models for a user's lockfile aliases.
Work only from the tools: every model key you propose must come from a tool result in this
conversation (search_models, where_is, recommend_for_use_case, compare_models, get_cost_analysis,
get_model, get_provider_models). """ + price_units_text() + """ A missing price is unknown.
Propose, per requested alias, a fallback chain of 1-3 provider/id keys (first = primary,
preferably on different providers) meeting the requirements and having every capability in
`needs` known true, with a one-line reason citing the tool data (price, context,
capabilities, sources).
When done, answer with JSON only:
{"aliases": [{"alias": "...", "models": ["provider/id", ...], "reason": "..."}], "message": "..."}"""


@dataclasses.dataclass
class Proposal:
    alias: str
    use_case: str
    models: list[str]
    requires: dict[str, Any]
    reason: str
    monthly_usd: float | None = None
    cost_note: str = ""
    needs: list[str] = dataclasses.field(default_factory=list)  #: capabilities every model must have known true


class Advisor:
    """One advisor run over ``tools``; ``client`` is a :class:`knollm.Client` (or None: guided)."""

    def __init__(self, tools: KnollmTools, io: TerminalIO, *, client: Any = None,
                 client_note: str = "", lock: str | Path | None = None, profile: str | None = None) -> None:
        self.tools = tools
        self.io = io
        self.client = client
        self.client_note = client_note
        self.lock = Path(lock) if lock else tools._lock_path(None, must_exist=False)
        self.profile = profile
        self.seen: set[str] = set()        # model keys that appeared in a tool result
        self.log: list[dict[str, Any]] = []  # tool calls made (name, arguments, ok)
        self.mode = "model" if client is not None else "guided"

    # -- tools, recorded
    def tool(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            res = self.tools.call(name, args)
        except Exception as e:
            self.log.append({"tool": name, "arguments": args, "ok": False, "error": str(e) or type(e).__name__})
            raise
        self.log.append({"tool": name, "arguments": args, "ok": True})
        self._collect(res)
        return res

    def _collect(self, obj: Any) -> None:
        if isinstance(obj, dict):
            k = obj.get("key")
            if isinstance(k, str) and "/" in k and isinstance(obj.get("provider"), str):
                self.seen.add(k)
            for v in obj.values():
                self._collect(v)
        elif isinstance(obj, list):
            for v in obj:
                self._collect(v)

    # -- questions
    def interview(self) -> Answers:
        from knollm.query.recommend import USE_CASES
        from knollm.vocab import CAPABILITIES

        vals: dict[str, Any] = {}
        for key, question, parse in QUESTIONS:
            q = question.format(use_cases=", ".join(USE_CASES), capabilities=", ".join(CAPABILITIES))
            for _ in range(5):
                raw = self.io.ask(key, q)
                try:
                    vals[key] = parse(raw)
                    if key == "providers":
                        vals[key] = [self.tools.catalog.provider(p)["id"] for p in vals[key]]
                    break
                except (ValueError, KnollmError) as e:
                    self.io.say(f"  ! {e}")
                    if not self.io.interactive:
                        raise KnollmError(f"answers: {key}: {e}") from None
            else:
                raise KnollmError(f"no usable answer for {key}")
        return Answers(**vals)

    def requires_for(self, use_case: str, a: Answers) -> dict[str, Any]:
        """Requirements of the alias for ``use_case``: the use case's required capabilities and
        context (data in :data:`knollm.query.recommend.USE_CASES`) plus the user's needs/privacy."""
        from knollm.lock.facts import CAPS
        from knollm.query.recommend import USE_CASES

        uc = USE_CASES[use_case]
        req: dict[str, Any] = {c: True for c in list(uc.required) + a.needs if c in CAPS}
        req["min_context"] = uc.min_context
        if a.privacy == "local":
            req["local_only"] = True
        return req

    @staticmethod
    def lacking(m: dict[str, Any], needs: list[str]) -> list[str]:
        """The user's ``needs`` model ``m`` does not have known true (unknown does not meet a need);
        checked here because most capabilities cannot be lockfile requirements."""
        caps = m.get("capabilities") or {}
        return [f"{c} unknown" if caps.get(c) is None else f"no {c}" for c in needs if caps.get(c) is not True]

    # -- proposing
    def propose(self, a: Answers) -> list[Proposal]:
        if self.client is not None:
            try:
                props = self._propose_with_model(a)
                if props:
                    return props
                self.io.say("The advisor model gave no usable proposal; continuing with the guided flow.")
            except _Fallback as e:
                self.io.say(f"The advisor model stopped: {e}. Continuing with the guided flow.")
        self.mode = "guided"
        return [self._guided(u, a) for u in a.use_cases]

    def _guided(self, use_case: str, a: Answers) -> Proposal:
        """Deterministic: the top recommendation for the use case, then the same model on other
        providers (``where_is``), then the next recommendations, up to 3 providers."""
        from knollm.lock.facts import check_requires

        req = self.requires_for(use_case, a)
        alias = use_case.replace("-", "_")
        needs = list(a.needs)
        try:
            rec = self.tool("recommend_for_use_case", {"use_case": use_case, "budget": a.budget_per_1k,
                                                       "needs": a.needs, "providers": a.providers or None,
                                                       "limit": 5})
        except KnollmError as e:
            return Proposal(alias, use_case, [], req, f"recommend failed: {e}", needs=needs)
        results = rec["results"]
        if not results:
            return Proposal(alias, use_case, [], req, "no model meets the requirements"
                            + (" within the budget" if a.budget_per_1k is not None else ""), needs=needs)
        chain: list[str] = []
        used: set[str] = set()

        def add(m: dict[str, Any]) -> None:
            failed, unknown = check_requires(m, req)
            if len(chain) < 3 and m["provider"] not in used and not failed and not unknown \
                    and not self.lacking(m, needs) and (not a.providers or m["provider"] in a.providers):
                chain.append(m["key"])
                used.add(m["provider"])

        top = results[0]
        add(top["model"])
        where = self.tool("where_is", {"model": top["model"]["canonical_id"]})
        for o in where["offers"]:
            p = o.get("prices") or {}
            if p.get("input") and p.get("output"):
                add(o)
        for r in results[1:]:
            add(r["model"])
        reason = (f"guided: top of recommend_for_use_case({use_case}) with score {top['score']}: {top['why']}; "
                  f"fallbacks on other providers from where_is and the next recommendations")
        return Proposal(alias, use_case, chain, req, reason if chain else
                        f"no recommended model meets every requirement and need ({', '.join(needs) or 'none'})",
                        needs=needs)

    def _propose_with_model(self, a: Answers) -> list[Proposal]:
        brief = {"aliases": [{"alias": u.replace("-", "_"), "use_case": u, "requires": self.requires_for(u, a)}
                             for u in a.use_cases],
                 "requests_per_month": a.requests_per_month, "budget_usd_month": a.budget_usd_month,
                 "budget_usd_per_1k_requests": a.budget_per_1k, "needs": a.needs,
                 "only_providers": a.providers, "privacy": a.privacy}
        messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM_PROMPT},
                                          {"role": "user", "content": json.dumps(brief)}]
        final = self._converse(messages)
        return self._proposals_from(final, a)

    def _converse(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Run the tool-calling loop until the model answers with the JSON proposal."""
        from knollm.errors import ClientError

        schemas = openai_tools(self.tools)
        repeats: dict[str, int] = {}
        nudged = False
        for _ in range(MAX_STEPS):
            try:
                r = self.client.chat(ADVISOR_ALIAS, messages, tools=schemas)
            except ClientError as e:
                raise _Fallback(f"advisor model unavailable ({e})") from None
            if r.tool_calls:
                messages.append(r.message())
                for tc in r.tool_calls:
                    fn = tc.get("function") or {}
                    name, raw = fn.get("name", ""), fn.get("arguments") or "{}"
                    sig = f"{name}:{raw}"
                    repeats[sig] = repeats.get(sig, 0) + 1
                    if repeats[sig] >= MAX_REPEATS:
                        raise _Fallback(f"the model is looping (called {name} with the same arguments "
                                        f"{repeats[sig]} times)")
                    messages.append({"role": "tool", "tool_call_id": tc.get("id") or name,
                                     "content": self._run_call(name, raw)})
                continue
            text = r.content or ""
            obj = _json_object(text)
            if obj is not None and isinstance(obj.get("aliases"), list):
                if obj.get("message"):
                    self.io.say(f"advisor: {obj['message']}")
                return obj
            if nudged:
                raise _Fallback("the model did not answer with the JSON proposal")
            nudged = True
            messages += [{"role": "assistant", "content": text},
                         {"role": "user", "content": "Answer with the JSON proposal only, as specified."}]
        raise _Fallback(f"no proposal after {MAX_STEPS} model turns (looping)")

    def _run_call(self, name: str, raw: str) -> str:
        if name not in TOOL_NAMES:
            self.log.append({"tool": name, "arguments": raw, "ok": False, "error": "unknown tool"})
            return json.dumps({"error": f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}"})
        if name == "create_lockfile_binding":
            return json.dumps({"error": "create_lockfile_binding is not available to the advisor: propose "
                                        "the aliases in the final JSON; the user confirms the write"})
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
        except ValueError as e:
            self.log.append({"tool": name, "arguments": raw, "ok": False, "error": f"bad JSON: {e}"})
            return json.dumps({"error": f"arguments are not a JSON object: {e}"})
        try:
            res = self.tool(name, args)
        except Exception as e:  # any tool failure goes back to the model as a tool error, never ends the run
            msg = str(e) if isinstance(e, KnollmError) else f"{name} failed: {type(e).__name__}: {e}"
            return json.dumps({"error": msg})
        return _fit(res)

    def _proposals_from(self, final: dict[str, Any], a: Answers) -> list[Proposal]:
        wanted = {u.replace("-", "_"): u for u in a.use_cases}
        out = []
        for item in final.get("aliases") or []:
            if not isinstance(item, dict) or item.get("alias") not in wanted:
                continue
            alias = item["alias"]
            models = [m for m in item.get("models") or [] if isinstance(m, str)]
            unseen = [m for m in models if m not in self.seen]
            if unseen:
                self.io.say(f"  ! {alias}: dropped {', '.join(unseen)}: not in any tool result")
            models = self._meeting(alias, [m for m in models if m in self.seen],
                                   self.requires_for(wanted[alias], a), a.needs)[:3]
            if models:
                out.append(Proposal(alias, wanted[alias], models, self.requires_for(wanted[alias], a),
                                    str(item.get("reason") or ""), needs=list(a.needs)))
        have = {p.alias for p in out}
        for alias, u in wanted.items():
            if alias not in have:
                self.io.say(f"  ! the advisor proposed nothing usable for {alias}; using the guided flow for it")
                out.append(self._guided(u, a))
        return out

    def _meeting(self, alias: str, keys: list[str], req: dict[str, Any],
                 needs: list[str] | tuple[str, ...] = ()) -> list[str]:
        """``keys`` whose catalog facts meet ``req`` (the lock's own check) and have every need
        known true; the others are dropped with the reason, ones with an unconfirmable
        requirement kept with a note."""
        from knollm.lock.facts import check_requires

        out = []
        for k in keys:
            m = self.tools.catalog.model(k)
            failed, unknown = check_requires(m, req)
            failed += [x for x in self.lacking(m, list(needs)) if x not in failed]  # unknown never meets a need
            if failed:
                self.io.say(f"  ! {alias}: dropped {k}: {'; '.join(failed)}")
                continue
            if unknown:
                self.io.say(f"  ! {alias}: {k}: cannot confirm {'; '.join(unknown)}")
            out.append(k)
        return out

    # -- costs, changes, diff, write
    def cost(self, p: Proposal, a: Answers) -> None:
        from knollm.query.recommend import USE_CASES

        p.monthly_usd, p.cost_note = None, ""
        if not p.models:
            return
        uc = USE_CASES[p.use_case]
        usage = {"input_tokens": uc.input_tokens, "output_tokens": uc.output_tokens,
                 "cached_tokens": uc.cached_tokens, "requests": a.requests_per_alias()}
        try:
            res = self.tool("get_cost_analysis", {"models": p.models[:1], "usage": usage})
        except KnollmError as e:
            p.cost_note = str(e)
            return
        if res["costs"]:
            p.monthly_usd = res["costs"][0]["total"]
            p.cost_note = (f"{a.requests_per_alias():,} requests × {uc.input_tokens:,} in/{uc.output_tokens:,} out, "
                           f"prices from {_price_sources(res['costs'][0]['model'])}")
        else:
            p.cost_note = "unknown: " + res["unknown"][0]["reason"]

    def show(self, props: list[Proposal]) -> None:
        self.io.say("")
        self.io.say(f"Proposal ({'advisor model' if self.mode == 'model' else 'guided flow'}):")
        total = 0.0
        for p in props:
            money = "unknown" if p.monthly_usd is None else f"${p.monthly_usd:,.2f}/month"
            self.io.say(f"  {p.alias}: {' > '.join(p.models) or '(nothing fits)'}  — {money}")
            if p.cost_note:
                self.io.say(f"      cost: {p.cost_note}")
            if p.reason:
                self.io.say(f"      why: {p.reason}")
            total += p.monthly_usd or 0.0
        unknown = [p.alias for p in props if p.models and p.monthly_usd is None]
        self.io.say(f"  total: ${total:,.2f}/month" + (f" (+ unknown for {', '.join(unknown)})" if unknown else ""))
        unrecorded = list(dict.fromkeys(c for p in props for c in p.needs if c not in p.requires))
        if unrecorded:
            self.io.say(f"  note: every model above has {', '.join(unrecorded)} known true in today's catalog; "
                        "knollm.lock cannot record this as a requirement, so `knollm lock validate` will not check it")

    def change(self, props: list[Proposal], a: Answers, line: str) -> str | None:
        """Apply one change command; returns an error message or None."""
        parts = line.split()
        by_alias = {p.alias: p for p in props}
        if parts[0] == "drop" and len(parts) == 2 and parts[1] in by_alias:
            props.remove(by_alias[parts[1]])
            return None
        if parts[0] == "set" and len(parts) >= 3 and parts[1] in by_alias:
            p = by_alias[parts[1]]
            keys = []
            for ref in _csv(" ".join(parts[2:]).replace(" ", ",")):
                try:
                    keys.append(self.tool("get_model", {"key": ref})["model"]["key"])
                except KnollmError as e:
                    return str(e)
            ok = self._meeting(p.alias, keys, p.requires, p.needs)
            if ok != keys:
                return (f"not set: the requirements of {p.alias} are {p.requires}"
                        + (f" and every model needs {', '.join(p.needs)} known true" if p.needs else ""))
            p.models, p.reason = keys, "set by you"
            self.cost(p, a)
            return None
        return "use: set ALIAS MODEL[,MODEL…] | drop ALIAS | (enter) accept"

    def diff(self, props: list[Proposal]) -> str:
        """The lockfile diff of writing every proposal (made on a copy, through the tool)."""
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d) / "knollm.lock"  # (a knollm.lock: a path create_lockfile_binding accepts)
            if self.lock.is_file():
                shutil.copyfile(self.lock, tmp)
            before = tmp.read_text("utf-8") if tmp.is_file() else ""
            for p in props:
                if p.models:
                    self.tools.call("create_lockfile_binding", {"alias": p.alias, "models": p.models,
                                                                "requires": p.requires, "path": str(tmp),
                                                                "profile": self.profile, "confirm": True})
            import difflib

            after = tmp.read_text("utf-8") if tmp.is_file() else ""
            return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True),
                                                f"a/{self.lock.name}", f"b/{self.lock.name}"))

    def write(self, props: list[Proposal]) -> list[dict[str, Any]]:
        return [self.tool("create_lockfile_binding", {"alias": p.alias, "models": p.models, "requires": p.requires,
                                                      "path": str(self.lock), "profile": self.profile,
                                                      "confirm": True})
                for p in props if p.models]

    # -- the whole conversation
    def run(self) -> int:
        io = self.io
        io.say("Knollm advisor: a few questions, then a proposal for your knollm.lock.")
        if self.client is None:
            io.say(f"No usable advisor model ({self.client_note or 'none configured'}): "
                   "using the deterministic guided flow over the same tools.")
        else:
            io.say(f"Advisor model: the `{ADVISOR_ALIAS}` alias ({self.client_note}).")
        a = self.interview()
        props = self.propose(a)
        for p in props:
            self.cost(p, a)
        while True:
            self.show(props)
            line = io.ask("change", "Change something? set ALIAS MODEL[,MODEL…] | drop ALIAS | enter to accept").strip()
            if not line:
                break
            err = self.change(props, a, line)
            if err:
                io.say(f"  ! {err}")
        if not any(p.models for p in props):
            io.say("Nothing to write.")
            return 1
        try:
            d = self.diff(props)
        except KnollmError as e:
            io.say(f"Cannot write the proposal: {e}")
            return 1
        io.say(f"\nChanges to {self.lock}:")
        io.say(d.rstrip() or "(no change)")
        if io.ask("confirm", f"Write {self.lock}? [y/N]").strip().lower() not in ("y", "yes"):
            io.say("Not written.")
            return 1
        self.write(props)
        io.say(f"Wrote {self.lock} ({', '.join(p.alias for p in props if p.models)}).")
        return 0


class _Fallback(Exception):
    """The advisor model cannot be used for this proposal (the message says why)."""


def _fit(res: dict[str, Any], limit: int = RESULT_CHARS) -> str:
    """``res`` as JSON of at most ~``limit`` characters: long lists are shortened (halved until
    it fits) and ``truncated`` says how many items each had — always valid JSON."""
    text = json.dumps(res, default=str)
    if len(text) <= limit:
        return text
    res = dict(res)
    lists = {k: v for k, v in res.items() if isinstance(v, list) and len(v) > 1}
    res["truncated"] = {k: len(v) for k, v in lists.items()}
    while len(text) > limit and any(len(res[k]) > 1 for k in lists):
        for k in lists:
            res[k] = res[k][: max(1, len(res[k]) // 2)]
        text = json.dumps(res, default=str)
    return text


def _json_object(text: str) -> dict[str, Any] | None:
    s, e = text.find("{"), text.rfind("}")
    if s < 0 or e <= s:
        return None
    try:
        obj = json.loads(text[s:e + 1])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _price_sources(view: dict[str, Any]) -> str:
    src = view.get("sources") or {}
    names = list(dict.fromkeys(s for f, s in src.items() if f.startswith("prices.")))
    return "/".join(names) or "?"


# ---------------------------------------------------------------------------- the advisor model
def advisor_binding(tools: KnollmTools, advisor_lock: str | Path | None) -> tuple[Any, str]:
    """``(binding, note)`` for the ``advisor`` alias: from ``advisor_lock``, else the project
    lockfile, else a bootstrap lockfile (``<cache>/advisor.lock``) chosen from the catalog among
    providers with a key set and local models. ``binding`` is None when nothing is usable.
    The bootstrap is always written to the cache dir, never to ``advisor_lock`` or the project
    lockfile: nothing of the user's is written before the user confirms."""
    from knollm.lock import resolve_alias

    for src in (advisor_lock, tools.lock):
        if src is not None and Path(src).is_file():
            b = resolve_alias(ADVISOR_ALIAS, lock=src)
            if b is not None:
                return b, f"{ADVISOR_ALIAS} in {src}"
    if advisor_lock is None and tools.lock is None:
        b = resolve_alias(ADVISOR_ALIAS)
        if b is not None:
            return b, f"{ADVISOR_ALIAS} in the project lockfile"
    from knollm.lock.roles import ALIASES
    from knollm.query.cache import cache_dir

    res = tools.chooser(from_keys=True).choose(dataclasses.replace(ALIASES["balanced"], name=ADVISOR_ALIAS))
    if not res["models"]:
        return None, "no provider key set and no local model found"
    path = cache_dir() / "advisor.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    # (Knollm's own file in the cache: the tool's rule on client-named paths does not apply)
    tools.write_binding(path, ADVISOR_ALIAS, res["models"], profile="default", confirm=True)
    return resolve_alias(ADVISOR_ALIAS, lock=path), f"bootstrap lockfile {path}"


def make_client(tools: KnollmTools, advisor_lock: str | Path | None) -> tuple[Any, str]:
    """A :class:`knollm.Client` whose ``advisor`` alias is the advisor binding, or ``(None, why)``."""
    try:
        b, note = advisor_binding(tools, advisor_lock)
    except KnollmError as e:
        return None, str(e)
    if b is None:
        return None, note
    from knollm.client import Client

    client = Client(catalog=tools.catalog, store=False, retries=1,
                    resolver=lambda name: b if name == ADVISOR_ALIAS else None)
    return client, f"{note}: {' > '.join(b.models)}"


def run_advisor(*, dumps: str | Path | None = None, lock: str | Path | None = None, profile: str | None = None,
                answers: str | Path | None = None, advisor_lock: str | Path | None = None,
                use_model: bool = True, io: TerminalIO | None = None) -> int:
    """The ``knollm advisor`` flow; returns an exit code (0 written, 1 not written)."""
    tools = KnollmTools(dumps=dumps, lock=lock, profile=profile)
    if io is None:
        io = ScriptedIO(load_answers(answers)) if answers else TerminalIO()
    client, note = make_client(tools, advisor_lock) if use_model else (None, "--no-model")
    try:
        return Advisor(tools, io, client=client, client_note=note, lock=lock, profile=profile).run()
    finally:
        if client is not None:
            client.close()


def interactive_init(lock_path: str | Path | None, profile: str | None, dumps: str | Path | None,
                     answers: str | Path | None = None) -> int:
    """The hook for ``knollm lock init --interactive``: the advisor writing ``lock_path``."""
    return run_advisor(dumps=dumps, lock=lock_path, profile=profile, answers=answers)

