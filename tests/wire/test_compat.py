"""relay.wire.compat: the websockets internals relay relies on are all there, or relay refuses to start."""

from __future__ import annotations

import importlib.util

import pytest
import websockets

import relay.wire.compat as compat
from relay.wire.compat import Connection, missing_internals


def _load_copy() -> None:
    spec = importlib.util.spec_from_file_location("compat_copy", compat.__file__)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


def test_installed_websockets_has_every_internal_relay_uses() -> None:
    """Every private attribute relay reads or overrides exists in the installed websockets.

    This is the test that fails loudly when a websockets upgrade moves one.
    """
    assert websockets.__version__.split(".")[0] == str(compat.VERIFIED_MAJOR)
    assert missing_internals() == []


def test_an_unverified_major_version_is_refused_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing under a websockets major version never verified is an ImportError naming it."""
    monkeypatch.setattr(websockets, "__version__", "18.0")
    with pytest.raises(ImportError, match=r"websockets >=17,<18 only; websockets 18\.0"):
        _load_copy()


def test_a_missing_internal_is_named_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """A websockets that lacks one internal relay overrides fails at import, naming it."""
    monkeypatch.delattr(Connection, "data_received")
    assert missing_internals() == ["Connection.data_received"]
    with pytest.raises(ImportError, match="Connection.data_received"):
        _load_copy()
