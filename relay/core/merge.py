"""Merging a partial GA session over another, the one way relay does it."""

from __future__ import annotations

from typing import Any


def merge_session(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: objects merge key by key, anything else replaces.

    An object whose ``type`` changes is replaced whole, never merged: a
    ``semantic_vad`` turn detection laid over ``server_vad`` must not keep
    ``threshold`` or ``silence_duration_ms``, which it does not have. Lists
    replace. Neither input is mutated and the result shares no mutable value
    with them.
    """
    merged = {key: _copy(value) for key, value in base.items()}
    for key, value in over.items():
        current = merged.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and _same_kind(current, value):
            merged[key] = merge_session(current, value)
        else:
            merged[key] = _copy(value)
    return merged


def _same_kind(current: dict[str, Any], value: dict[str, Any]) -> bool:
    return "type" not in value or value.get("type") == current.get("type")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
