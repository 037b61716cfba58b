"""The ``/health`` document: is this relay up, and what does it hold right now."""

from __future__ import annotations

from typing import Any

from relay.transport.state import AppState


def health(state: AppState) -> dict[str, Any]:
    """Liveness plus counts: sessions, waiting frontends, open connections, ends by reason."""
    settings = state.settings
    counts = state.registry.counts()
    handlers = state.counters.handlers
    doc: dict[str, Any] = {
        "status": "shutting_down" if state.shutting_down else "ok",
        "node": state.registry.node,
        "model": "local" if settings.uses_local_model else "openai",
        "frontendDialect": settings.frontend_dialect,
        "sessions": counts["sessions"],
        "waitingFrontends": counts["waitingFrontends"],
        "connections": {
            # Streams still waiting for their start count as calls too.
            "call": max(counts["call"], handlers["call"]),
            "frontend": max(counts["frontend"], handlers["frontend"]),
            "upstream": counts["upstream"],
        },
        "endedByReason": dict(state.registry.ended_by_reason),
        "resumeGraceS": settings.resume_grace_s,
        "security": {
            "auth": state.gate.verifier is not None,
            "twilioSignatures": state.gate.signatures is not None,
            "origins": list(settings.allowed_origins),
            "handshakeTimeoutS": settings.handshake_timeout_s,
            "connRatePerS": settings.conn_rate_per_s,
            "connBurst": settings.conn_burst,
            "adminToken": state.gate.admin_configured,
        },
    }
    if state.fleet is not None:
        doc["fleet"] = state.fleet.view()
    return doc


def protections(state: AppState) -> tuple[list[str], list[str]]:
    """The protections that are on, and those that are off (the start-up line)."""
    settings, gate = state.settings, state.gate
    marks = {
        "frontend tokens": gate.verifier is not None,
        "token lifetime cap": gate.verifier is not None and settings.auth_max_ttl_s > 0,
        "Twilio signatures": gate.signatures is not None,
        "operator endpoints (admin token)": gate.admin_configured,
        "origin allow-list": "*" not in settings.allowed_origins,
        "loopback only": settings.loopback_only,
        "connection rate limit": settings.conn_rate_per_s > 0,
        "inbound budgets": settings.call_messages_per_s > 0 and settings.frontend_messages_per_s > 0,
        "trusted proxy": settings.trust_proxy,
    }
    return ([name for name, on in marks.items() if on],
            [name for name, on in marks.items() if not on])
