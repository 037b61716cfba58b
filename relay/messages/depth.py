"""How deeply nested a JSON value relay accepts may be.

Every value a frontend or Twilio sends is decoded, then checked here before
anything looks inside it: relay serialises parts of it again (orjson refuses
more than 254 levels) and walks it recursively, so a deeply nested value would
otherwise crash the session that received it. Pure; never recurses itself.
"""

from __future__ import annotations

from typing import Any, Final

#: Frontend messages: a session.update's tool schemas are the deepest
#: documented value (message → session → tools → tool → parameters → …).
MAX_FRONTEND_DEPTH: Final = 32
#: Media Streams messages are two levels deep; customParameters is flat.
MAX_TWILIO_DEPTH: Final = 8


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects or arrays more than ``limit`` levels deep.

    A scalar is depth 0, ``{}`` and ``[]`` depth 1, ``{"a": []}`` depth 2.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > limit:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return False
