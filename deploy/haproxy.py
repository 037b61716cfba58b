#!/usr/bin/env python3
"""Write the HAProxy configuration that puts a fleet of relay nodes behind one address.

    python deploy/haproxy.py --bind 127.0.0.1:8080 \\
        --server n1=127.0.0.1:9001 --server n2=127.0.0.1:9002 [--stats 127.0.0.1:8404] > haproxy.cfg

HAProxy hashes every request on its session ID, so a call and its browser meet on the same
relay node: the ID is the second path segment of ``/call/{id}`` and ``/logs/{id}``, else the
``sessionId`` query parameter (``/twiml?sessionId=…``, ``/logs?sessionId=…``), else the
``callSid`` one. The hash is consistent (a node that goes down or comes back moves only its
own sessions) and each server's ring position comes from its ``id``, which this script derives
from the server's name: every HAProxy given the same names hashes the same way, whatever the
order of the ``--server`` options. Requests that carry no ID (a bare ``/logs`` or ``/call``,
``/health``) are spread round robin.

``deploy/haproxy.cfg`` is this script's output for the arguments written in its header; regenerate
it rather than editing it by hand. Standard library only: copy the file to the HAProxy machine
and run it there. Needs HAProxy 2.6 or later (``balance hash``).
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

#: HAProxy places a server on the consistent-hash ring at ``hash(id * 4096 + n)`` for each of its
#: ``weight * 16`` points, so ids below 2**20 keep every server's points apart.
MAX_SERVER_ID = 1_000_000
#: Ring points per server are ``weight * 16``: 100 gives each server 1600 points, which spreads
#: sessions evenly across a handful of nodes (weight 1, HAProxy's default, gives only 16).
SERVER_WEIGHT = 100

#: The backend holding the relay nodes (the stats page and the runtime API name it).
BACKEND = "relays"

_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")
_DURATION = re.compile(r"\d+(us|ms|s|m|h|d)?\Z")


class ConfigError(ValueError):
    """An argument HAProxy would refuse, or two servers that would share a ring position."""


@dataclass(frozen=True, slots=True)
class Server:
    """One relay node as HAProxy reaches it."""

    name: str
    address: str

    @property
    def id(self) -> int:
        """The server's HAProxy id, from its name alone (so every HAProxy agrees on it)."""
        return zlib.crc32(self.name.encode()) % MAX_SERVER_ID + 1


@dataclass(frozen=True, slots=True)
class Options:
    """Everything the configuration depends on. Durations are HAProxy's (``500ms``, ``1h``)."""

    bind: str
    servers: tuple[Server, ...]
    #: Address of the read-only stats page (``/stats``); none when empty.
    stats: str = ""
    #: PEM file with certificate and key: HAProxy terminates TLS on ``bind``.
    tls_cert: str = ""
    #: Unix socket for HAProxy's runtime API (``show servers state``); none when empty.
    admin_socket: str = ""
    #: Health checks: every ``check_inter``; down after ``fall`` failures, up after ``rise``.
    check_inter: str = "1s"
    fall: int = 2
    rise: int = 2
    #: Idle limit of an upgraded WebSocket; above RELAY_MAX_SESSION_S (1800 s by default).
    timeout_tunnel: str = "1h"
    #: After a reload the old process keeps the calls it carries at most this long.
    hard_stop_after: str = "35m"
    maxconn: int = 20000
    #: The command line the configuration's header quotes (how to regenerate it).
    command: str = ""

    def check(self) -> None:
        """Raise :class:`ConfigError` for what HAProxy would refuse or hash badly."""
        if not self.servers:
            raise ConfigError("give at least one --server NAME=HOST:PORT")
        _address("--bind", self.bind)
        if self.stats:
            _address("--stats", self.stats)
        seen: dict[int, str] = {}
        seen_names: list[str] = []
        for server in self.servers:
            if not _NAME.match(server.name):
                raise ConfigError(
                    f"server name {server.name!r}: use letters, digits, '_', '.' and '-'")
            _address(f"--server {server.name}", server.address)
            other = seen.setdefault(server.id, server.name)
            if other == server.name and seen_names.count(server.name):
                raise ConfigError(f"two servers are named {server.name}")
            if other != server.name:
                raise ConfigError(f"servers {other} and {server.name} have the same id "
                                  f"{server.id}: rename one")
            seen_names.append(server.name)
        for flag, value in (("--check-inter", self.check_inter),
                            ("--timeout-tunnel", self.timeout_tunnel),
                            ("--hard-stop-after", self.hard_stop_after)):
            if not _DURATION.match(value):
                raise ConfigError(f"{flag} {value!r}: use a number with us, ms, s, m, h or d")
        if self.fall < 1 or self.rise < 1 or self.maxconn < 1:
            raise ConfigError("--fall, --rise and --maxconn must be at least 1")


def _address(flag: str, value: str) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        raise ConfigError(f"{flag} {value!r}: use HOST:PORT or :PORT")


def render(options: Options) -> str:
    """The whole configuration file for ``options``.

    Raises:
        ConfigError: See :meth:`Options.check`.
    """
    options.check()
    out: list[str] = []
    add = out.append
    add("# relay behind HAProxy: a call and its browser meet on one relay node.")
    add("#")
    add("# Generated by deploy/haproxy.py: change the arguments and regenerate, rather than edit.")
    for line in _wrapped(options.command or "python deploy/haproxy.py ..."):
        add(f"#   {line}")
    add("#")
    add("# Give each relay node RELAY_TRUST_PROXY=true and RELAY_TRUSTED_HOPS=1 (HAProxy is")
    add("# the one proxy that appends to X-Forwarded-For), PUBLIC_URL=https://<this host>, the")
    add("# same RELAY_REDIS_URL, and RELAY_NODE_ID set to its server name below.")
    add("")
    add("global")
    add("    # -db / systemd: stdout is the journal; or `log /dev/log local0` for rsyslog.")
    add("    log stdout format raw local0")
    add("    # Every call and every browser is one connection; HAProxy needs about two file")
    add("    # descriptors per connection (systemd: LimitNOFILE).")
    add(f"    maxconn {options.maxconn}")
    add("    # A reload leaves the old process running the WebSockets it carries; none outlives")
    add("    # this (above RELAY_MAX_SESSION_S, so a reload ends no call early).")
    add(f"    hard-stop-after {options.hard_stop_after}")
    if options.admin_socket:
        add(f"    stats socket {options.admin_socket} mode 660 level admin")
        add("    stats timeout 30s")
    if options.tls_cert:
        add("    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets")
    add("")
    add("defaults")
    add("    mode http")
    add("    log global")
    add("    option httplog")
    add("    option dontlognull")
    add("    # Adds X-Forwarded-For: <client address> to every request relay receives.")
    add("    option forwardfor")
    add("    # A node that refuses a connection before its health check notices: try again on")
    add("    # another node instead of failing the call.")
    add("    retries 2")
    add("    option redispatch 1")
    add("    timeout connect 5s")
    add("    # Plain HTTP (health, TwiML, the API) and the WebSocket handshake.")
    add("    timeout client 30s")
    add("    timeout server 30s")
    add("    timeout http-request 10s")
    add("    timeout http-keep-alive 10s")
    add("    timeout queue 5s")
    add("    # Once upgraded, a WebSocket is a tunnel: relay pings every RELAY_PING_INTERVAL_S")
    add("    # (20 s), and a call may last RELAY_MAX_SESSION_S (1800 s); keep the tunnel's idle")
    add("    # limit above both.")
    add(f"    timeout tunnel {options.timeout_tunnel}")
    add("    timeout client-fin 5s")
    add("    timeout server-fin 5s")
    add("")
    add("frontend relay")
    if options.tls_cert:
        add("    # TLS ends here: Twilio opens only wss:// streams, and an https:// page only wss://")
        add("    # sockets. The PEM holds the certificate chain and the key (certbot: cat")
        add("    # fullchain.pem privkey.pem), read at start and on each reload (after a renewal:")
        add("    # systemctl reload haproxy). HTTP/1.1 only: WebSocket upgrades need it.")
        add(f"    bind {options.bind} ssl crt {options.tls_cert} alpn http/1.1")
    else:
        add("    # Plain HTTP: put TLS in front, or give --tls-cert to end TLS here (Twilio opens")
        add("    # only wss:// streams).")
        add(f"    bind {options.bind}")
    add("    # HAProxy is the first hop: what a client claims about its address is dropped.")
    add("    http-request del-header X-Forwarded-For")
    add("    http-request set-header X-Forwarded-Proto https if { ssl_fc }")
    add("    http-request set-header X-Forwarded-Proto http unless { ssl_fc }")
    add("    http-request set-header X-Forwarded-Host %[req.hdr(host)]")
    add(f"    default_backend {BACKEND}")
    add("")
    add(f"backend {BACKEND}")
    add("    # The session ID: /call/{id} or /logs/{id}, else ?sessionId=, else ?callSid=. No URL")
    add("    # decoding: the same ID written the same way hashes the same.")
    set_sid = "    http-request set-var(txn.sid,ifnotempty)"
    add(f"{set_sid} path,field(3,/) if {{ path_beg /call/ /logs/ }}")
    add(f"{set_sid} url_param(sessionId) unless {{ var(txn.sid) -m found }}")
    add(f"{set_sid} url_param(callSid) unless {{ var(txn.sid) -m found }}")
    add("    # Without an ID, round robin. No hash-balance-factor: it would send an ID elsewhere")
    add("    # under load, and the call and its browser would no longer meet.")
    add("    balance hash var(txn.sid)")
    add("    hash-type consistent")
    add("    # relay answers GET /health with 200 while it serves; a draining node stops")
    add("    # accepting first, so it fails fast. A node marked down keeps its open WebSockets")
    add("    # (no on-marked-down shutdown-sessions): only new sessions go elsewhere.")
    add("    option httpchk")
    add("    http-check send meth GET uri /health ver HTTP/1.1 hdr Host relay")
    add("    http-check expect status 200")
    add(f"    default-server check inter {options.check_inter} fall {options.fall} "
        f"rise {options.rise} weight {SERVER_WEIGHT}")
    add("    # Each id is derived from the server's name: keep the names, and every HAProxy in")
    add("    # front of this fleet sends a session to the same node.")
    for server in options.servers:
        add(f"    server {server.name} {server.address} id {server.id}")
    if options.stats:
        add("")
        add("frontend stats")
        add("    # Read-only; keep it on a private address.")
        add(f"    bind {options.stats}")
        add("    stats enable")
        add("    stats uri /stats")
        add("    stats refresh 5s")
    add("")
    return "\n".join(out)


def _wrapped(command: str, width: int = 92) -> list[str]:
    """A command line as shell lines of at most ``width`` characters, one option per break."""
    words = shlex.split(command)
    groups: list[str] = []
    for word in words:
        if groups and not word.startswith("-") and groups[-1].startswith("-") \
                and " " not in groups[-1]:
            groups[-1] += " " + shlex.quote(word)  # an option and its value stay together
        else:
            groups.append(shlex.quote(word))
    lines = [""]
    for group in groups:
        if lines[-1] and len(lines[-1]) + 1 + len(group) > width - 2:
            lines[-1] += " \\"
            lines.append("    " + group)
        else:
            lines[-1] = f"{lines[-1]} {group}" if lines[-1] else group
    return lines


def command_in(config: str) -> list[str]:
    """The arguments a generated configuration's header quotes (to regenerate it)."""
    lines = config.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("#   python deploy/haproxy.py")]
    if not starts:
        raise ConfigError("no 'python deploy/haproxy.py' command in the header")
    command = ""
    for line in lines[starts[0]:]:
        text = line.removeprefix("#").strip()
        command += " " + text.removesuffix("\\")
        if not text.endswith("\\"):
            break
    return shlex.split(command)[2:]


def parse_server(value: str) -> Server:
    """``NAME=HOST:PORT`` as a :class:`Server`."""
    name, sep, address = value.partition("=")
    if not sep or not name or not address:
        raise argparse.ArgumentTypeError(f"{value!r}: use NAME=HOST:PORT")
    return Server(name, address)


def parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    d = Options(bind="", servers=())
    p = argparse.ArgumentParser(
        prog="deploy/haproxy.py", description=__doc__.splitlines()[0],
        epilog="The configuration goes to standard output.")
    p.add_argument("--bind", required=True, help="HOST:PORT or :PORT HAProxy listens on")
    p.add_argument("--server", type=parse_server, action="append", required=True,
                   metavar="NAME=HOST:PORT", help="a relay node (repeat for each)")
    p.add_argument("--stats", default="", metavar="HOST:PORT", help="serve /stats here")
    p.add_argument("--tls-cert", default="", metavar="PEM", help="terminate TLS with this PEM")
    p.add_argument("--admin-socket", default="", metavar="PATH", help="runtime API socket")
    p.add_argument("--check-inter", default=d.check_inter, metavar="DURATION")
    p.add_argument("--fall", type=int, default=d.fall)
    p.add_argument("--rise", type=int, default=d.rise)
    p.add_argument("--timeout-tunnel", default=d.timeout_tunnel, metavar="DURATION")
    p.add_argument("--hard-stop-after", default=d.hard_stop_after, metavar="DURATION")
    p.add_argument("--maxconn", type=int, default=d.maxconn)
    return p


def options_from_args(argv: Sequence[str]) -> Options:
    """Parse a command line (without the program name) into :class:`Options`."""
    args = parser().parse_args(list(argv))
    return Options(
        bind=args.bind, servers=tuple(args.server), stats=args.stats, tls_cert=args.tls_cert,
        admin_socket=args.admin_socket, check_inter=args.check_inter, fall=args.fall,
        rise=args.rise, timeout_tunnel=args.timeout_tunnel,
        hard_stop_after=args.hard_stop_after, maxconn=args.maxconn,
        command=shlex.join(["python", "deploy/haproxy.py", *argv]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Print the configuration for a command line; 2 on a bad argument."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        sys.stdout.write(render(options_from_args(argv)))
    except ConfigError as exc:
        print(f"deploy/haproxy.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
