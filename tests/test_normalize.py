"""Unit examples from the pipeline issue: units, unknowns, context fields, capabilities, dates."""

from __future__ import annotations

import pytest

from knollm.catalog.sources import huggingface, litellm, translate as translate_offers
from knollm.catalog.sources.litellm import litellm_model_id
from knollm.catalog.normalize import BadValue, NOVITA_UNIT, PER_MILLION, PER_TOKEN, infer_kind, to_int, to_price, ts_to_date


def tr(source, rec, rid="m"):
    warnings = []
    if source == "litellm":  # a cost-map entry always names its provider
        rec = {"litellm_provider": "openai", **rec}
    [(_, _, out)] = translate_offers(source, rid, rec, lambda f, msg: warnings.append((f, msg)))
    return out, warnings


@pytest.mark.parametrize(
    "raw,unit,expected",
    [
        ("0.0000025", PER_TOKEN, 2.5),  # OpenRouter-style string, USD per token
        (2.5e-06, PER_TOKEN, 2.5),  # LiteLLM *_cost_per_token
        (0.88, PER_MILLION, 0.88),  # Together / DeepInfra / Chutes / HF router
        (500, NOVITA_UNIT, 0.05),  # Novita *_price_per_m in $0.0001/M
        (0.051830799999999996, PER_MILLION, 0.0518308),  # float artefact rounded
        ("0.00000035", PER_TOKEN, 0.35),
        ("0", PER_TOKEN, 0.0),
    ],
)
def test_price_units(raw, unit, expected):
    assert to_price(raw, unit) == (expected, False)


@pytest.mark.parametrize("raw", ["", None])
def test_empty_price_is_unknown(raw):
    assert to_price(raw, PER_TOKEN) == (None, False)


def test_minus_one_is_variable_pricing():
    assert to_price("-1", PER_TOKEN) == (None, True)
    assert to_price(-1, PER_MILLION) == (None, True)


@pytest.mark.parametrize("raw", ["N/A", -5, "abc", True, float("nan")])
def test_bad_prices_raise(raw):
    with pytest.raises(BadValue):
        to_price(raw, PER_TOKEN)


def test_counts():
    assert to_int(0) is None
    assert to_int("131072") == 131072
    with pytest.raises(BadValue):
        to_int(-3)
    with pytest.raises(BadValue):
        to_int("12.5")


def test_timestamps_seconds_and_milliseconds():
    assert ts_to_date(1757327372) == "2025-09-08"
    assert ts_to_date(1757327372646) == "2025-09-08"  # Poe / Pollinations use ms
    assert ts_to_date(0) is None
    assert ts_to_date("2024-10-22T00:00:00Z") == "2024-10-22"  # Anthropic created_at


@pytest.mark.parametrize(
    "rec",
    [
        {"context_length": 4096},
        {"context_window": 4096},
        {"max_model_len": 4096},
        {"context_size": 4096},
        {"max_context_length": 4096},
        {"metadata": {"context_length": 4096}},
        {"limits": {"context": 4096}},
        {"max_input_tokens": 4096},
        {"top_provider": {"context_length": 4096}},
    ],
)
def test_context_from_any_field(rec):
    out, w = tr("x", rec)
    assert out["context_window"] == 4096 and not w


def test_zero_context_is_unknown():
    out, _ = tr("chutes", {"max_model_len": 0})
    assert "context_window" not in out


@pytest.mark.parametrize(
    "source,rec",
    [
        ("mistral", {"capabilities": {"function_calling": True}}),
        ("fireworks", {"supports_tools": True}),
        ("featherless", {"features": ["tool_use"]}),
        ("openrouter", {"supported_parameters": ["tools", "max_tokens"]}),
        ("novita", {"features": ["function-calling"]}),
        ("friendli", {"functionality": {"tool_call": True}}),
        ("baseten", {"supported_features": ["tools"]}),
        ("litellm", {"supports_function_calling": True}),
    ],
)
def test_tool_spellings_unified(source, rec):
    out, _ = tr(source, rec)
    assert out["capabilities"]["tools"] is True


@pytest.mark.parametrize(
    "source,rec",
    [
        ("openrouter", {"architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"]}}),
        ("litellm", {"supports_vision": True}),
        ("deepinfra", {"metadata": {"tags": ["vision"]}}),
        ("fireworks", {"supports_image_input": True}),
        ("mistral", {"capabilities": {"vision": True}}),
    ],
)
def test_vision_spellings_unified(source, rec):
    out, _ = tr(source, rec)
    assert out["capabilities"]["vision"] is True


def test_authoritative_lists_mean_no():
    out, _ = tr("openrouter", {"supported_parameters": ["max_tokens"]})
    assert out["capabilities"]["tools"] is False
    # Featherless lists features only when it has some: absence is unknown, not False
    out, _ = tr("featherless", {"features": []})
    assert "tools" not in out.get("capabilities", {})


def test_image_model_zero_price_is_unknown_not_free():
    out, _ = tr("openrouter", {"architecture": {"input_modalities": ["text"], "output_modalities": ["image"]},
                               "pricing": {"prompt": "0", "completion": "0"}})
    assert out["kind"] == "image"
    assert "input" not in out.get("prices", {}) and "output" not in out.get("prices", {})


def test_wrong_types_warn_and_stay_unknown():
    out, w = tr("novita", {"input_token_price_per_m": "N/A", "output_token_price_per_m": -5,
                           "context_size": {"value": 4096}})
    assert "prices" not in out and "context_window" not in out
    fields = sorted(f for f, _ in w)
    assert fields == ["context_window", "prices.input", "prices.output"]


def test_litellm_prefix_and_units():
    [(pid, mid, f)] = litellm.translate("groq/llama3-8b-8192", {"litellm_provider": "groq", "mode": "chat",
                                                        "input_cost_per_token": 5e-08,
                                                        "output_cost_per_token": 8e-08,
                                                        "max_tokens": 8192}, lambda *a: None)
    assert pid == "groq" and mid == f["id"] == "llama3-8b-8192"
    assert f["prices"] == {"input": 0.05, "output": 0.08}
    assert f["max_output"] == 8192
    assert litellm_model_id("together_ai/meta-llama/Llama-3-8b", "together_ai") == "meta-llama/Llama-3-8b"


def test_hf_router_offers_expanded():
    rec = {"id": "org/M", "providers": [
        {"provider": "novita", "status": "live", "pricing": {"input": 0.5, "output": 0.7}, "context_length": 8192},
        {"provider": "groq", "status": "live", "supports_tools": True}]}
    offers = huggingface.translate("org/M", rec, lambda *a: None)
    assert [o[1] for o in offers] == ["org/M:novita", "org/M:groq"]
    assert offers[0][2]["prices"] == {"input": 0.5, "output": 0.7}
    assert offers[0][2]["context_window"] == 8192
    assert offers[1][2]["capabilities"]["tools"] is True


@pytest.mark.parametrize(
    "mid,kind",
    [("text-embedding-3-small", "embedding"), ("BAAI/bge-en-icl", "embedding"), ("whisper-large-v3", "audio"),
     ("black-forest-labs/FLUX.1-dev", "image"), ("gpt-4o", "chat"), ("meta-llama/Llama-Guard-3-8B", "moderation")],
)
def test_kind_inference(mid, kind):
    assert infer_kind(mid) == kind


def test_deprecation_dates_are_compared_with_the_build_date():
    from knollm.catalog.build import _Offer, _resolve

    def model(date, today):
        off = _Offer("p", "m")
        off.add("dump", tr("litellm", {"deprecation_date": date})[0], "models_x.json")
        return _resolve(off, today)

    past = model("2025-01-01", "2025-09-08")
    assert past["deprecated"] is True and past["sources"]["deprecated"] == "dump"
    future = model("2026-06-01", "2025-09-08")
    assert future["deprecated"] is False and "retires_2026-06-01" in future["flags"]
    out, _ = tr("mistral", {"deprecation": "soon"})  # not a date: still deprecated
    assert out["deprecated"] is True
