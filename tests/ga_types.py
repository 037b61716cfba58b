"""What relay sends the model is a GA client event, by the ``openai`` package's own types.

:func:`check_client_event` validates one event with a pydantic ``TypeAdapter``
over ``openai.types.realtime.RealtimeClientEventParam`` (strict: no coercion),
then looks for keys the types do not declare: a TypedDict adapter ignores
them, and the real API answers them with ``unknown_parameter``. The fixtures
run it over every event a relay under test sent the fake model
(``tests/conftest.py``) and every event a unit-tested session handed back
(``tests/recording.py``).
"""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Iterator
from typing import Any

from openai.types.realtime import RealtimeClientEventParam
from pydantic import TypeAdapter
from typing_extensions import is_typeddict

_ADAPTER: TypeAdapter[Any] = TypeAdapter(RealtimeClientEventParam)
_WRAPPERS = {typing.Annotated, typing.Required, typing.NotRequired, typing.ClassVar}
_SEQUENCES = {list, tuple, collections.abc.Iterable, collections.abc.Sequence}


def check_client_event(event: dict[str, Any]) -> None:
    """Raise ``AssertionError`` unless ``event`` is a GA client event with no undeclared key."""
    try:
        _ADAPTER.validate_python(event, strict=True)
    except Exception as exc:
        raise AssertionError(f"not a GA client event: {event.get('type')!r}: {exc}") from None
    unknown = sorted(unknown_keys(event))
    assert not unknown, f"{event.get('type')}: keys the GA types do not declare: {unknown}"


def unknown_keys(event: dict[str, Any]) -> set[str]:
    """Dotted paths of the keys in ``event`` that no GA client event type declares."""
    return set(_unknown(event, RealtimeClientEventParam, ""))


def _strip(hint: Any) -> Any:
    while typing.get_origin(hint) in _WRAPPERS:
        hint = typing.get_args(hint)[0]
    return hint


def _is_union(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType)


def _literal_types(hint: Any) -> set[Any] | None:
    """The values a TypedDict's ``type`` key may take, or None if it has no literal ``type``."""
    fields = typing.get_type_hints(hint, include_extras=True)
    if "type" not in fields:
        return None
    kind = _strip(fields["type"])
    return set(typing.get_args(kind)) if typing.get_origin(kind) is typing.Literal else None


def _unknown(value: Any, hint: Any, path: str) -> Iterator[str]:
    hint = _strip(hint)
    if _is_union(hint):
        members = [_strip(m) for m in typing.get_args(hint)]
        if isinstance(value, dict):
            dicts = [m for m in members if is_typeddict(m)]
            tagged = [m for m in dicts if value.get("type") in (_literal_types(m) or set())]
            candidates = tagged or dicts
            if not candidates:
                return
            # The member that explains the value best is the one it was meant to be.
            yield from min((list(_unknown(value, m, path)) for m in candidates), key=len)
            return
        for member in members:
            if typing.get_origin(member) in _SEQUENCES or member in _SEQUENCES:
                yield from _unknown(value, member, path)
                return
        return
    if is_typeddict(hint) and isinstance(value, dict):
        fields = typing.get_type_hints(hint, include_extras=True)
        for key, item in value.items():
            where = f"{path}.{key}" if path else key
            if key not in fields:
                yield where
            else:
                yield from _unknown(item, fields[key], where)
        return
    origin = typing.get_origin(hint)
    if (origin in _SEQUENCES or _is_sequence_alias(hint)) and isinstance(value, list):
        args = typing.get_args(hint)
        if args:
            for index, item in enumerate(value):
                yield from _unknown(item, args[0], f"{path}[{index}]")
    # Mappings (JSON schemas, metadata) and scalars are free-form or typed by the adapter.


def _is_sequence_alias(hint: Any) -> bool:
    # openai's SequenceNotStr[str] is a Protocol generic, not a typing sequence.
    return getattr(typing.get_origin(hint), "__name__", "") == "SequenceNotStr"
