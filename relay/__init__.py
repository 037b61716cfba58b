"""relay: a WebSocket relay for voice-AI phone calls.

Twilio Media Streams on ``/call``, the OpenAI Realtime API upstream, and the
user's browser on ``/logs``; relay owns the whole session lifecycle.
"""

__version__ = "0.1.0"
