#!/usr/bin/env python
"""Play a simulated phone interview against a running relay and show what the browser sees.

Usage::

    python scripts/demo_call.py [--url ws://localhost:8081] [--seconds 6]

A frontend connects to ``/logs/{sessionId}`` and sends a job configuration; a simulated Twilio
call joins the session (``sessionId`` custom parameter) and the caller talks in real time, 20 ms
frames: 1 s of tone, 1 s of silence, 1 s of tone, then silence until ``--seconds`` of call have
passed. Then the frontend ends the session. Each event the frontend receives is printed as one
line; a summary follows. With the relay's built-in local model (which echoes the caller and
produces transcripts) this shows a whole conversation offline.

Exits 0 once ``call.status_changed`` ``ended`` was seen, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

try:
    import relay  # noqa: F401  (only to learn whether the package is importable)
except ImportError:  # run from a checkout without installing: scripts/ sits next to relay/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relay_sim.frontend import SimulatedFrontend
from relay_sim.inbox import PeerClosed, SimError
from relay_sim.twilio_call import FRAME_BYTES, SAMPLE_RATE, SimulatedCall
from websockets.exceptions import ConnectionClosed, WebSocketException

JOB_CONFIG = {
    "role": "Backend Engineer",
    "company": "Acme",
    "interviewStyle": "friendly",
    "jobDescription": "Build and run the APIs behind our voice products.",
}
FRAMES_PER_SECOND = 50  # Twilio sends one 20 ms frame every 20 ms


def describe(message: dict[str, Any]) -> str | None:
    """One human-readable line for an event worth showing, or None to only count it."""
    kind = message.get("type")
    match kind:
        case "session.associated":
            return (
                f"🔗 paired with call {message.get('callSid')} "
                f"(stream {message.get('streamSid')})"
            )
        case "job_config.ack":
            return f"📋 job configuration {message.get('status')}"
        case "call.status_changed":
            reason = message.get("reason")
            return f"📞 call {message.get('status')}" + (f" ({reason})" if reason else "")
        case "conversation.item.input_audio_transcription.completed":
            return f"👤 caller:      {message.get('transcript', '').strip()}"
        case "response.output_audio_transcript.done":
            return f"🤖 interviewer: {message.get('transcript', '').strip()}"
        case "input_audio_buffer.speech_started":
            return "🎙️ model hears the caller speaking"
        case "input_audio_buffer.speech_stopped":
            return "🤫 model hears the caller stop"
        case "session.created" | "session.updated":
            return f"🧠 model {kind}"
        case "session.inactivity_warning":
            return f"⏳ inactivity warning: disconnect in {message.get('disconnectInMs')} ms"
        case "session.duration_warning":
            return f"⏳ duration warning: ends in {message.get('endsInMs')} ms"
        case "error":
            return f"⚠️ error {message.get('code')}: {message.get('message')}"
        case _:
            return None


class Demo:
    """One demo run: the frontend's event printer and the counters for the summary."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.counts: Counter[str] = Counter()
        self.ended = asyncio.Event()
        self._start = asyncio.get_running_loop().time()

    def say(self, line: str) -> None:
        elapsed = asyncio.get_running_loop().time() - self._start
        print(f"[{elapsed:6.2f}s] {line}", flush=True)

    async def show_frontend(self, frontend: SimulatedFrontend) -> None:
        """Print every frontend event until the relay closes the connection."""
        while True:
            try:
                message = await frontend.wait_for_any(timeout=3600)
            except PeerClosed as closed:
                self.say(f"🖥️ frontend closed by relay (code {closed.code})")
                return
            self.counts[str(message.get("type"))] += 1
            line = describe(message)
            if line is not None:
                self.say(line)
            if message.get("type") == "call.status_changed" and message.get("status") == "ended":
                self.ended.set()

    async def talk(self, call: SimulatedCall) -> None:
        """Speak in real time: tone, silence, tone, then silence until the call's length."""
        total = max(int(self.seconds * FRAMES_PER_SECOND), 4 * FRAMES_PER_SECOND)
        plan = [
            (True, FRAMES_PER_SECOND),
            (False, FRAMES_PER_SECOND),
            (True, FRAMES_PER_SECOND),
            (False, total - 3 * FRAMES_PER_SECOND),
        ]
        for loud, frames in plan:
            what = "speaking (tone)" if loud else "silent"
            self.say(f"📱 caller {what} for {frames / FRAMES_PER_SECOND:.1f} s")
            await call.speak(frames, loud, interval=1 / FRAMES_PER_SECOND)


async def run(url: str, seconds: float, wait: float) -> int:
    demo = Demo(seconds)
    session_id = str(uuid.uuid4())
    demo.say(f"🆔 session {session_id}")
    frontend = await SimulatedFrontend.connect(url, f"/logs/{session_id}", open_timeout=wait)
    printer = asyncio.create_task(demo.show_frontend(frontend))
    call: SimulatedCall | None = None
    try:
        await frontend.send_json({"type": "job_config", "config": JOB_CONFIG})
        call = await SimulatedCall.connect(
            url, "/call", custom_parameters={"sessionId": session_id}, open_timeout=wait
        )
        await call.start()
        demo.say(f"📱 call {call.call_sid} started")
        try:
            await demo.talk(call)
        except ConnectionClosed:
            demo.say("📱 the relay closed the call stream early")
        demo.say("🖥️ frontend sends session.end")
        await frontend.send_json({"type": "session.end"})
        try:
            async with asyncio.timeout(wait):
                await demo.ended.wait()
        except TimeoutError:
            demo.say(f"❌ no call.status_changed ended within {wait:g}s")
    finally:
        if call is not None:
            await call.close()
        await frontend.close()
        await printer

    print("\n— summary —")
    if call is not None:
        audio = len(call.audio_received())
        outbound = Counter(str(m.get("event")) for m in call.received)
        print(
            f"caller received {audio} bytes of audio ({audio / SAMPLE_RATE:.2f} s, "
            f"{audio // FRAME_BYTES} × 20 ms); messages to the call: {dict(outbound)}"
        )
        if call.protocol_errors:
            print(f"protocol errors on the call: {call.protocol_errors}")
    print(f"frontend events: {dict(demo.counts)}")
    return 0 if demo.ended.is_set() else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://localhost:8081", help="the relay's WebSocket URL")
    parser.add_argument("--seconds", type=float, default=6.0, help="call length (at least 4)")
    parser.add_argument("--wait", type=float, default=10.0, help="limit for each expected event")
    args = parser.parse_args()
    try:
        return asyncio.run(run(args.url, args.seconds, args.wait))
    except (SimError, WebSocketException, OSError, TimeoutError) as exc:
        print(f"demo failed — {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
