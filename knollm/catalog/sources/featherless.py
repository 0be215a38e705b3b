"""Featherless: serves only public Hugging Face weights, and only text-generation models
(LLMs): every record is a chat model, whatever its name says (``…-EmbedFix`` is a fixed
embedding *layer* of an LLM, ``bge-reranker-v2-gemma`` an LLM fine-tune); ``features`` only
when non-empty."""

from __future__ import annotations

from typing import TypedDict

from knollm.catalog.sources.features import feature_caps
from knollm.catalog.sources.generic import Put, Spec, translator

__all__ = ["Raw", "SPEC", "translate"]


class Raw(TypedDict, total=False):
    features: list[str]  # listed only when the model has some: absence is unknown, not "no"


def _capabilities(rec: dict, put: Put) -> None:
    feature_caps(rec, put, authoritative=False)


SPEC = Spec(open_weights=True, capabilities=_capabilities, default_kind="chat")
translate = translator(SPEC)
