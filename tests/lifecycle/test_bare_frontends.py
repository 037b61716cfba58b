"""A bare /logs frontend (the reference app's page) across calls and page refreshes.

The app connects once to a bare ``/logs``, saves its configuration once, and
never re-sends it: its frontend outlives a call that ended and waits for the
next one with that configuration. A refreshed page's bare ``/logs`` rejoins
the call nobody is watching any more.
"""

from __future__ import annotations

from tests.conftest import Relay, RelayFactory

SAVE = {"type": "session.update", "session": {
    "instructions": "You are a terse interviewer for a plumbing job.", "voice": "ash"}}


async def test_a_bare_frontend_keeps_its_configuration_for_the_next_call(relay: Relay) -> None:
    """Call 2 runs on the configuration the page saved before call 1; the page stays connected."""
    page = await relay.frontend("/logs")
    await page.send_json(SAVE)
    await page.wait_for("job_config.ack", lambda m: m["status"] == "queued")
    for n in (1, 2):
        call = await relay.call("/call")
        await call.start()
        associated = await page.wait_for(
            "session.associated", lambda m, sid=call.call_sid: m["callSid"] == sid)
        model = await relay.model.next_connection()
        update = await model.wait_for("session.update")
        assert update["session"]["instructions"] == SAVE["session"]["instructions"], n
        assert update["session"]["audio"]["output"]["voice"] == "ash"
        await call.hang_up()
        ended = await page.wait_for("call.status_changed",
                                    lambda m, sid=associated["sessionId"]: m["status"] == "ended"
                                    and m["sessionId"] == sid)
        assert ended["reason"] == "caller_hung_up"
        await relay.wait_until_waiting(1)
        assert not page.is_closed
    await page.close()
    await relay.wait_idle()


async def test_a_named_frontend_still_ends_with_its_session(relay: Relay) -> None:
    """"Practice again" is a new session ID: /logs/{id} is closed when its interview ends."""
    sid = "practice-1"
    page = await relay.frontend(f"/logs/{sid}")
    await page.send_json(SAVE)
    call = await relay.call(f"/call/{sid}")
    await call.start()
    await relay.model.next_connection()
    await call.hang_up()
    code, _ = await page.wait_closed()
    assert code == 1000
    await relay.wait_idle()


async def test_an_operator_stop_closes_a_bare_frontend(make_relay: RelayFactory) -> None:
    """Only a call's own end keeps a bare page: a reset closes it like any other."""
    relay = await make_relay()
    page = await relay.frontend("/logs")
    call = await relay.call("/call")
    await call.start()
    await page.wait_for("session.associated")
    await relay.server.registry.reset_all_sessions()
    await page.wait_closed()
    await relay.wait_idle()


async def test_a_refreshed_page_rejoins_the_call_nobody_watches(relay: Relay) -> None:
    """The refreshed page's bare /logs joins the live call and gets what it missed."""
    page = await relay.frontend("/logs")
    call = await relay.call("/call")
    await call.start()
    first = await page.wait_for("session.associated")
    model = await relay.model.next_connection()
    await page.close()  # the refresh
    await model.transcript_done("item_1", "missed while the page reloaded")
    await model.response_done()
    again = await relay.frontend("/logs")
    associated = await again.wait_for("session.associated")
    assert associated["sessionId"] == first["sessionId"]
    resumed = await again.wait_for("session.resumed")
    assert resumed["missed"] >= 1
    await again.wait_for("response.output_audio_transcript.done")
    await call.hang_up()
    await again.wait_for("call.status_changed", lambda m: m["status"] == "ended")
    await again.close()
    await relay.wait_idle()
