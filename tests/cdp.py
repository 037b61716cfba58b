"""A small Chrome DevTools Protocol client: a headless chromium the tests can drive.

No new dependency: chromium is launched as a subprocess and spoken to over a ``websockets``
client connection, in CDP's flat session mode (one browser socket; each command for a page
carries the page's ``sessionId``). Enough for the live sessions page's test: open a page,
navigate, evaluate JavaScript (polled with a deadline, never a fixed sleep) and screenshot.

    async with Browser.launch(binary) as browser:
        page = await browser.new_page()
        await page.navigate(url)
        text = await page.wait_for("document.body.innerText.includes('live') && ...")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Self

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CHROMIUM = Path("/usr/bin/chromium")

_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces we may not have
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
)
_LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


class CdpError(Exception):
    """A CDP command failed, or the page threw while evaluating an expression."""


class Browser:
    """One headless chromium process and its DevTools connection."""

    def __init__(self, process: asyncio.subprocess.Process, ws: ClientConnection,
                 profile: Path, stderr_tail: list[str]) -> None:
        self._process = process
        self._ws = ws
        self._profile = profile
        self._stderr_tail = stderr_tail
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        #: ``Runtime.exceptionThrown`` and ``Log.entryAdded`` events, per page session.
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read(), name="cdp-reader")

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, binary: Path = CHROMIUM, timeout: float = 10.0) -> AsyncIterator[Self]:
        """Start chromium with a throwaway profile; kill it and delete the profile on exit."""
        profile = Path(tempfile.mkdtemp(prefix="relay-chromium-"))
        process = await asyncio.create_subprocess_exec(
            str(binary), *_FLAGS, f"--user-data-dir={profile}", "about:blank",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: renderers die with it
        )
        stderr_tail: list[str] = []
        drain: asyncio.Task[None] | None = None
        browser: Browser | None = None
        try:
            assert process.stderr is not None
            url = await asyncio.wait_for(_devtools_url(process.stderr, stderr_tail), timeout)
            # chromium keeps writing to stderr: drain it, or it blocks on a full pipe.
            drain = asyncio.create_task(_drain(process.stderr, stderr_tail), name="cdp-stderr")
            ws = await connect(url, max_size=None, proxy=None, open_timeout=timeout)
            browser = cls(process, ws, profile, stderr_tail)
            yield browser
        finally:
            if browser is not None:
                await browser._close()
            await _stop(process, graceful=browser is not None)
            if drain is not None:
                drain.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drain
            shutil.rmtree(profile, ignore_errors=True)

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session_id: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Send one command and return its result.

        Raises:
            CdpError: chromium answered with an error.
            TimeoutError: no answer within ``timeout``.
        """
        message: dict[str, Any] = {"id": next(self._ids), "method": method,
                                   "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        try:
            await self._ws.send(orjson.dumps(message).decode())
            reply = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(message["id"], None)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_page(self, width: int = 1360, height: int = 760) -> Page:
        """Open a blank tab of the given viewport size (its own sessionStorage)."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self.events[page.session_id] = []
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1,
                         "mobile": False})
        return page

    def stderr(self) -> str:
        """The last lines chromium wrote to stderr (for failure messages)."""
        return "\n".join(self._stderr_tail[-20:])

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                message = orjson.loads(frame)
                if "id" in message:
                    future = self._pending.get(message["id"])
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("method") in ("Runtime.exceptionThrown", "Log.entryAdded"):
                    self.events.setdefault(message.get("sessionId", ""), []).append(message)
        except ConnectionClosed:
            pass
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(CdpError("the DevTools connection closed"))

    async def _close(self) -> None:
        with contextlib.suppress(CdpError, TimeoutError, ConnectionClosed):
            await self.send("Browser.close", timeout=2.0)
        await self._ws.close()
        await self._reader


class Page:
    """One tab, addressed through its flat-mode CDP session."""

    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   timeout: float = 10.0) -> dict[str, Any]:
        """Send a command to this page."""
        return await self.browser.send(method, params, self.session_id, timeout)

    async def navigate(self, url: str) -> None:
        """Start loading ``url``; wait for what it shows with :meth:`wait_for`."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CdpError(f"navigating to {url}: {result['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` evaluated in the page.

        Raises:
            CdpError: the expression threw.
        """
        result = await self.send("Runtime.evaluate", {"expression": expression,
                                                      "returnByValue": True,
                                                      "awaitPromise": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"evaluating {expression!r}: {text}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float, what: str = "") -> Any:
        """Evaluate ``expression`` until it is truthy; return that value.

        Polls every 50 ms: the page changes on its own timers, so there is no event to wait on.
        Errors while a navigation swaps the document count as "not yet".

        Raises:
            AssertionError: still falsy after ``timeout``; says what the page showed last.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last_error: Exception | None = None
        while True:
            try:
                value = await self.evaluate(expression)
                if value:
                    return value
            except CdpError as exc:
                last_error = exc
            if loop.time() > deadline:
                shown = await self.text()
                raise AssertionError(
                    f"timed out waiting for {what or expression}"
                    f"{f' (last error: {last_error})' if last_error else ''}; the page shows:\n"
                    f"{shown[:2000]}")
            await asyncio.sleep(0.05)

    async def text(self) -> str:
        """The page's visible text, or why it could not be read."""
        try:
            return str(await self.evaluate("document.body ? document.body.innerText : ''"))
        except (CdpError, TimeoutError) as exc:
            return f"<unreadable: {exc}>"

    async def screenshot(self, path: Path) -> Path:
        """Write a PNG of the whole page (not only the viewport) to ``path``."""
        metrics = await self.send("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        viewport = metrics.get("cssLayoutViewport") or metrics["layoutViewport"]
        clip = {"x": 0, "y": 0, "scale": 1,
                "width": max(size["width"], viewport["clientWidth"]),
                "height": max(size["height"], viewport["clientHeight"])}
        shot = await self.send("Page.captureScreenshot",
                               {"format": "png", "clip": clip, "captureBeyondViewport": True})
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def exceptions(self) -> list[str]:
        """Uncaught JavaScript exceptions and CSP violations reported by this page so far."""
        found = []
        for event in self.browser.events.get(self.session_id, []):
            params = event["params"]
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description")
                             or details.get("text", "exception"))
            elif params["entry"].get("source") == "security":
                found.append(params["entry"].get("text", "security error"))
        return found


async def _devtools_url(stderr: asyncio.StreamReader, tail: list[str]) -> str:
    while True:
        line = await stderr.readline()
        if not line:
            raise CdpError("chromium exited before DevTools listened:\n" + "\n".join(tail[-20:]))
        tail.append(line.decode(errors="replace").rstrip())
        found = _LISTENING.search(line)
        if found:
            return found.group(1).decode()


async def _drain(stderr: asyncio.StreamReader, tail: list[str]) -> None:
    while line := await stderr.readline():
        tail.append(line.decode(errors="replace").rstrip())
        del tail[:-50]


async def _stop(process: asyncio.subprocess.Process, *, graceful: bool) -> None:
    """Wait briefly for chromium to exit after Browser.close, then kill its process group."""
    if graceful and process.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 3.0)
    # Also reaps helpers (renderer, zygote) a crashed or stuck browser left behind.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
