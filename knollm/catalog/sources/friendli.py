"""Friendli: capabilities as an object ``functionality.{tool_call, structured_output}``."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.generic import Put, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Functionality(TypedDict, total=False):
    tool_call: bool
    structured_output: bool


class Raw(TypedDict, total=False):
    functionality: Functionality
    # ``pricing.input`` / ``pricing.output`` per million: read by the common translator


def _capabilities(rec: dict, put: Put) -> None:
    f = rec.get("functionality")
    if isinstance(f, dict):
        put("tools", f.get("tool_call"))
        put("structured_output", f.get("structured_output"))


SPEC = Spec(capabilities=_capabilities)
translate = translator(SPEC)
