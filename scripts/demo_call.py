#!/usr/bin/env python
"""Play a simulated phone interview against a running relay and show what the browser sees.

Usage::

    python scripts/demo_call.py [--url ws://localhost:8081] [--seconds 6]
    python scripts/demo_call.py --outbound [--outcome answered|no-answer|busy|voicemail]

A frontend connects to ``/logs/{sessionId}`` and sends a job configuration; a simulated Twilio
call joins the session (``sessionId`` custom parameter) and the caller talks in real time, 20 ms
frames: 1 s of tone, 1 s of silence, 1 s of tone, then silence until ``--seconds`` of call have
passed. Then the frontend ends the session. Each event the frontend receives is printed as one
line; a summary follows. With the relay's built-in local model (which echoes the caller and
produces transcripts) this shows a whole conversation offline.

With ``--outbound`` the interviewer calls the candidate instead: the script starts a fake Twilio
REST API and a relay of its own (local model, signatures on) wired to it, opens the page, asks
relay to place the call (``POST /api/calls``), and plays what Twilio would: signed status
callbacks (initiated, ringing, then the ``--outcome``), and for an answered call the signed
stream on the TwiML's URL, the candidate talking, and the hang-up.

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


OUTBOUND_TO = "+15551234567"
OUTBOUND_FROM = "+15557654321"


async def run_outbound(outcome: str, seconds: float, wait: float) -> int:
    """The "call me" flow against a fake Twilio API and a relay started for it."""
    import aiohttp
    from relay_sim.node import RelayNode
    from relay_sim.processes import free_port
    from relay_sim.twilio_api import FakeTwilioApi
    from twilio.request_validator import RequestValidator

    account, token = "AC" + "d" * 32, "demo-auth-token-0123456789"
    demo = Demo(seconds)
    async with FakeTwilioApi(account, token) as twilio:
        port = free_port()
        public = f"http://127.0.0.1:{port}"
        node = RelayNode("demo", port=port, env={
            "TWILIO_ACCOUNT_SID": account, "TWILIO_AUTH_TOKEN": token,
            "TWILIO_API_BASE_URL": twilio.base_url, "TWILIO_FROM_NUMBER": OUTBOUND_FROM,
            "PUBLIC_URL": public, "RELAY_MACHINE_DETECTION": "on" if outcome == "voicemail" else "off",
        })
        await node.start()
        try:
            session_id = str(uuid.uuid4())
            demo.say(f"🆔 session {session_id}; relay at {public} (fake Twilio at {twilio.base_url})")
            frontend = await SimulatedFrontend.connect(node.url, f"/logs/{session_id}?userId=demo")
            printer = asyncio.create_task(demo.show_frontend(frontend))
            await frontend.send_json({"type": "job_config", "config": JOB_CONFIG})
            async with aiohttp.ClientSession() as http, http.post(
                    f"{public}/api/calls?userId=demo", json={"to": OUTBOUND_TO, "sessionId": session_id},
                    headers={"Content-Type": "application/json"}) as resp:
                answer = await resp.json()
            demo.say(f"🖥️ POST /api/calls → {resp.status} {answer}")
            if resp.status != 201:
                await frontend.close()
                await printer
                return 1
            call_sid = answer["callSid"]
            placed = twilio.outbound.placed[call_sid]
            outbound = twilio.outbound
            for status in ("initiated", "ringing"):
                await asyncio.sleep(0.5)
                demo.say(f"☁️ Twilio: {status}")
                await outbound.progress(call_sid, status, public)
            await asyncio.sleep(1.0)
            call: SimulatedCall | None = None
            if outcome in ("no-answer", "busy"):
                demo.say(f"☁️ Twilio: {outcome}")
                await outbound.progress(call_sid, outcome, public)
            else:
                demo.say("☁️ Twilio: in-progress (answered)")
                await outbound.progress(call_sid, "in-progress", public)
                url, params = placed.stream()
                signature = RequestValidator(token).compute_signature(url, {})
                call = await SimulatedCall.connect(node.url, url.split(str(port), 1)[1],
                                                   call_sid=call_sid,
                                                   extra_headers={"X-Twilio-Signature": signature})
                await call.start(params)
                if outcome == "voicemail":
                    await asyncio.sleep(1.0)
                    demo.say("☁️ Twilio AMD: machine_start")
                    await outbound.amd(call_sid, "machine_start", public)
                else:
                    try:
                        await demo.talk(call)
                    except ConnectionClosed:
                        demo.say("📱 the relay closed the call stream early")
                    demo.say("📱 the candidate hangs up")
                    await call.hang_up()
                    await outbound.progress(call_sid, "completed", public)
            try:
                async with asyncio.timeout(wait):
                    await demo.ended.wait()
            except TimeoutError:
                demo.say(f"❌ no call.status_changed ended within {wait:g}s")
            if outcome == "voicemail":
                # relay hangs up the machine after telling the page why.
                await twilio.wait_for_request(lambda r: r.call_sid == call_sid, timeout=wait)
            if call is not None:
                await call.close()
            await frontend.close()
            await printer
            hangups = [r.form for r in twilio.requests_for(call_sid)]
            print("\n— summary —")
            print(f"Twilio was asked: {len(twilio.outbound.placed)} call(s) placed, "
                  f"updates for the call: {hangups or 'none'}")
            print(f"frontend events: {dict(demo.counts)}")
        finally:
            await node.terminate()
    return 0 if demo.ended.is_set() else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outbound", action="store_true",
                        help="the interviewer calls the candidate (a fake Twilio and a relay of its own)")
    parser.add_argument("--outcome", default="answered",
                        choices=("answered", "no-answer", "busy", "voicemail"),
                        help="how the placed call goes (with --outbound)")
    parser.add_argument("--url", default="ws://localhost:8081", help="the relay's WebSocket URL")
    parser.add_argument("--seconds", type=float, default=6.0, help="call length (at least 4)")
    parser.add_argument("--wait", type=float, default=10.0, help="limit for each expected event")
    args = parser.parse_args()
    try:
        if args.outbound:
            return asyncio.run(run_outbound(args.outcome, args.seconds, args.wait))
        return asyncio.run(run(args.url, args.seconds, args.wait))
    except (SimError, WebSocketException, OSError, TimeoutError) as exc:
        print(f"demo failed — {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
