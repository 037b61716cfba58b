"""``python -m relay``: settings → logging → server, until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
import sys

from relay.config import Settings, SettingsError
from relay.logs import configure_logging, get_logger
from relay.server import RelayServer


async def run(settings: Settings) -> None:
    """Start the server and serve until a signal asks it to stop."""
    server = RelayServer(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # Installed before listening: a SIGTERM right after start must drain too.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await server.close()


def main() -> int:
    """Entry point; returns the process exit status."""
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"relay: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        get_logger().error("❌ Cannot listen", host=settings.host, port=settings.port, error=str(exc))
        return 1
    get_logger().info("👋 Bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
