"""The live sessions page in a real headless browser (Debian's chromium, driven over CDP).

The page polls /api/sessions; these tests start sessions with simulated calls and frontends
and read what the page shows. They write screenshots to artifacts/ for people to look at.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from relay_sim.frontend import SimulatedFrontend
from relay_sim.twilio_call import SimulatedCall

from tests.cdp import CHROMIUM, Browser, Page
from tests.conftest import Relay, RelayFactory
from tests.timing import WAIT, t

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="chromium not installed: run scripts/install_browser.sh",
)

ADMIN = "admin-secret-0123"
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
#: The page polls this often (seconds) in tests, so nothing waits on the 1 s default.
POLL = "0.2"


def js(value: object) -> str:
    """``value`` as a JavaScript literal."""
    return json.dumps(value)


def live_row(sid: str) -> str:
    """An expression: the live row of ``sid`` as {col: text}, plus its title and classes."""
    return f"""(() => {{
        const row = document.querySelector('#live-rows tr[data-session-id=' + {js(js(sid))} + ']');
        if (!row) return null;
        const cells = Object.fromEntries([...row.cells].map(c => [c.dataset.col, c.innerText]));
        cells.sessionTitle = row.cells[0].querySelector('[title]')?.title;
        cells.classes = row.className;
        return cells;
    }})()"""


def ended_row(sid: str) -> str:
    """An expression: the ended row of ``sid`` as {col: text}."""
    return f"""(() => {{
        const row = document.querySelector('#ended-rows tr[data-session-id=' + {js(js(sid))} + ']');
        return row && Object.fromEntries([...row.cells].map(c => [c.dataset.col, c.innerText]));
    }})()"""


async def live_call(relay: Relay, user: str) -> tuple[str, SimulatedFrontend, SimulatedCall]:
    """A session of ``user`` with a frontend and a started call, the model connected."""
    sid = str(uuid.uuid4())
    frontend = await relay.frontend(f"/logs/{sid}?userId={quote(user)}")
    call = await relay.call(f"/call/{sid}")
    await call.start()
    upstream = await relay.model.next_connection()
    await upstream.wait_for("session.update")
    return sid, frontend, call


async def open_page(browser: Browser, url: str) -> Page:
    page = await browser.new_page()
    await page.navigate(url)
    return page


async def test_page_shows_a_live_session_and_why_it_ended(make_relay: RelayFactory) -> None:
    """A call's session appears live with its user, then under ended with caller_hung_up."""
    relay = await make_relay(admin_token=ADMIN, inactivity_warning_s=t(1.0),
                             inactivity_timeout_s=t(60.0))
    async with Browser.launch() as browser:
        page = await open_page(browser, f"{relay.http}/dashboard?interval={POLL}&token={ADMIN}")
        await page.wait_for("document.body.dataset.status === 'ok'", WAIT, "the first poll")
        assert await page.evaluate("location.search") == f"?interval={POLL}", "token left in URL"

        alice, _, alice_call = await live_call(relay, "alice")
        bob, _, bob_call = await live_call(relay, "bob")
        waiting = await relay.frontend("/logs?userId=carol")
        await relay.wait_until_waiting(1)

        row = await page.wait_for(
            f"(r => r && r.state === 'live' && r.model === 'open' && r)({live_row(alice)})",
            WAIT, "alice's session live")
        assert row["sessionTitle"] == alice
        assert row["session"] == alice[:8] + "…"
        assert row["user"] == "alice"
        assert row["call"].startswith("connected") and alice_call.call_sid[:10] in row["call"]
        assert row["frontends"] == "1 open"
        await page.wait_for("!!document.querySelector('#live-rows [data-state=waiting]')",
                            WAIT, "carol's frontend waiting for a call")

        await alice_call.hang_up()
        ended = await page.wait_for(ended_row(alice), WAIT, "alice's session under ended")
        assert ended["reason"] == "caller_hung_up"
        assert ended["user"] == "alice"
        assert ended["ended"].endswith(" ago")
        assert await page.wait_for(f"{live_row(alice)} === null", WAIT, "alice's live row gone")
        await page.wait_for(
            "document.querySelector('#reasons [data-reason=caller_hung_up]')?.innerText"
            ".replace(/\\s+/g, ' ') === 'caller_hung_up 1'", WAIT, "the ended-by-reason count")

        bob_row = await page.wait_for(
            f"(r => r && r.classes.includes('warned') && r)({live_row(bob)})",
            WAIT, "bob's inactivity warning highlighted")
        assert bob_row["warnings"] == "inactivity"
        await page.wait_for("document.getElementById('count-sessions').innerText === '2'",
                            WAIT, "the live session count")
        shot = await page.screenshot(ARTIFACTS / "dashboard.png")
        assert shot.stat().st_size > 10_000
        assert page.exceptions() == []

        await bob_call.hang_up()
        await waiting.close()
        await relay.wait_idle()
        await page.wait_for("document.getElementById('live-empty').offsetParent !== null",
                            WAIT, "no live sessions left")


async def test_page_asks_for_the_admin_token(make_relay: RelayFactory) -> None:
    """No token: the form; a wrong one is refused; values stay text; a gone relay is shown."""
    relay = await make_relay(admin_token=ADMIN)
    async with Browser.launch() as browser:
        page = await open_page(browser, f"{relay.http}/?interval={POLL}")
        await page.wait_for("document.body.dataset.status === 'auth'", WAIT, "the token form")
        assert await page.evaluate(
            "document.getElementById('token-form').offsetParent !== null"
            " && document.getElementById('content').offsetParent === null")
        await page.screenshot(ARTIFACTS / "dashboard-token.png")

        submit = ("(token => { document.getElementById('token-input').value = token;"
                  " document.getElementById('token-form').requestSubmit(); return true; })")
        await page.evaluate(f"{submit}('not-the-token')")
        await page.wait_for("document.getElementById('token-error').offsetParent !== null",
                            WAIT, "the token refused")
        assert await page.evaluate("sessionStorage.getItem('relay.adminToken')") is None

        await page.evaluate(f"{submit}({js(ADMIN)})")
        await page.wait_for("document.body.dataset.status === 'ok'", WAIT, "the sessions")
        assert await page.evaluate("sessionStorage.getItem('relay.adminToken')") == ADMIN

        # A hostile value is shown as text: no element is made of it and nothing runs.
        hostile = "<img src=x onerror=window.pwned=1>"
        frontend = await relay.frontend(f"/logs?userId={quote(hostile)}")
        shown = await page.wait_for(
            "document.querySelector('#live-rows td[data-col=user]')?.innerText", WAIT,
            "the waiting frontend's session")
        assert shown == hostile
        assert await page.evaluate("!document.querySelector('main img') && !window.pwned")
        assert page.exceptions() == []

        await frontend.close()
        await relay.wait_idle()

        await relay.server.close()
        banner = await page.wait_for(
            "document.body.dataset.status === 'unreachable'"
            " && document.getElementById('banner').innerText", WAIT, "the unreachable banner")
        assert banner.startswith("Relay unreachable.")
        await page.screenshot(ARTIFACTS / "dashboard-unreachable.png")


async def test_page_says_how_to_turn_it_on_without_an_admin_token(relay: Relay) -> None:
    """Without RELAY_ADMIN_TOKEN the page shows no sessions and names the variable to set."""
    await relay.frontend(f"/logs/{uuid.uuid4()}?userId=alice")
    async with Browser.launch() as browser:
        page = await open_page(browser, f"{relay.http}/?interval={POLL}")
        text = await page.wait_for(
            "document.body.dataset.status === 'off'"
            " && document.getElementById('off').innerText", WAIT, "the off notice")
        assert "RELAY_ADMIN_TOKEN" in text
        assert await page.evaluate("document.getElementById('content').offsetParent === null")
        assert page.exceptions() == []
