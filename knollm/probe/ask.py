"""``knollm ask``: one prompt to several models in parallel, answers side by side.

Each answer carries its tokens, time and cost. ``judge`` asks one more model to compare
the answers; its verdict is returned as ``{"opinion_of": model, …}`` and always shown as
a model's opinion, never as a measurement.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from knollm.probe.common import Target, announce, capped_client, check_cap, error_info

__all__ = ["ask", "judge_prompt"]


def judge_prompt(prompt: str, answers: list[dict[str, Any]]) -> str:
    """The judge's instruction: compare the labelled answers to ``prompt``."""
    parts = [f"Question:\n{prompt}\n"]
    for i, a in enumerate(answers):
        parts.append(f"Answer {chr(65 + i)} ({a['key']}):\n{a.get('content') or '(no answer)'}\n")
    parts.append("Compare the answers for correctness, completeness and clarity. Say which is best and why, "
                 "in at most five sentences. Start with 'Best: <letter>'.")
    return "\n".join(parts)


def _answer(client: Any, t: Target, messages: list[dict], max_tokens: int) -> dict[str, Any]:
    from knollm.errors import ClientError

    try:
        r = client.chat(t.key, messages, max_tokens=max_tokens)
    except ClientError as e:
        return {"key": t.key, "ok": False, "content": None, **(error_info(e) or {})}
    return {"key": t.key, "ok": True, "content": r.content, "input_tokens": r.usage.input_tokens,
            "output_tokens": r.usage.output_tokens, "usage_estimated": r.usage.estimated,
            "duration_ms": r.duration_ms, "ttft_ms": r.ttft_ms, "cost_usd": r.cost_usd,
            "unpriced_reason": r.unpriced_reason}


def ask(targets: list[Target], prompt: str, *, system: str | None = None, judge: Target | None = None,
        max_tokens: int = 512, judge_max_tokens: int = 400, max_cost: float | None = None,
        allow_unpriced: bool = False, env: Any = None, providers: dict | None = None, timeout: float = 120.0,
        on_announce: Callable[[float | None], None] | None = None) -> dict[str, Any]:
    """Ask every target in parallel (then the judge); the cost is announced first and capped."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    planned = [(t, messages, {"max_tokens": max_tokens}) for t in targets]
    if judge is not None:
        # the judge's prompt holds every answer: price it at max_tokens per answer (~4 chars a token)
        stub = judge_prompt(prompt, [{"key": t.key, "content": "x" * 4 * max_tokens} for t in targets])
        planned.append((judge, [{"role": "user", "content": stub}], {"max_tokens": judge_max_tokens}))
    announced = announce(planned)
    cap = check_cap(announced, max_cost, allow_unpriced)
    if on_announce:
        on_announce(announced)
    everyone = list({t.key: t for t in [*targets, *([judge] if judge else [])]}.values())
    with capped_client(everyone, cap, env=env, providers=providers, retries=1, timeout=timeout) as client:
        with ThreadPoolExecutor(max_workers=max(1, len(targets))) as pool:
            answers = list(pool.map(lambda t: _answer(client, t, messages, max_tokens), targets))
        verdict = None
        if judge is not None:
            got = [a for a in answers if a["ok"]]
            j = _answer(client, judge, [{"role": "user", "content": judge_prompt(prompt, got)}], judge_max_tokens)
            verdict = {"opinion_of": judge.key, "label": f"the opinion of the model {judge.key}, not a measurement",
                       "labels": {chr(65 + i): a["key"] for i, a in enumerate(got)}, **j}
    costs = [a.get("cost_usd") for a in answers if a["ok"]] + ([verdict.get("cost_usd")] if verdict and verdict["ok"]
                                                               else [])
    return {"prompt": prompt, "answers": answers, "judge": verdict, "announced_usd": announced,
            "cost_usd": None if any(c is None for c in costs) else sum(costs)}
