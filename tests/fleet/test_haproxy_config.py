"""deploy/haproxy.py writes configurations HAProxy accepts; deploy/haproxy.cfg is its output."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from relay.config import Settings
from tests.fleet.services import HAPROXY, OPENSSL, needs_haproxy
from tests.timing import t

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "deploy" / "haproxy.py"
SHIPPED = ROOT / "deploy" / "haproxy.cfg"


def _load_generator() -> ModuleType:
    # A script beside the packages (operators copy it to the HAProxy machine), not installed.
    spec = importlib.util.spec_from_file_location("deploy_haproxy", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


gen = _load_generator()

EXAMPLES = {
    "one node": ["--bind", "127.0.0.1:8080", "--server", "n1=127.0.0.1:9001"],
    "two nodes and stats": ["--bind", "127.0.0.1:8080", "--server", "n1=127.0.0.1:9001",
                            "--server", "n2=127.0.0.1:9002", "--stats", "127.0.0.1:8404"],
    "fast checks, admin socket": ["--bind", ":8080", "--server", "a=127.0.0.1:9001",
                                  "--server", "b=127.0.0.1:9002", "--server", "c=127.0.0.1:9003",
                                  "--check-inter", "200ms", "--fall", "3", "--rise", "1",
                                  "--timeout-tunnel", "2h", "--admin-socket", "ADMIN_SOCKET"],
}

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def seconds(duration: str) -> float:
    """An HAProxy duration (``500ms``, ``1h``; milliseconds without a unit) in seconds."""
    number, unit = re.fullmatch(r"(\d+)([a-z]*)", duration).groups()  # type: ignore[union-attr]
    return int(number) * (_UNITS[unit] if unit else 1e-3)


def render(argv: list[str]) -> str:
    return gen.render(gen.options_from_args(argv))


def haproxy_check(config: str, folder: Path) -> tuple[int, str]:
    """``haproxy -c`` on ``config``: its exit status and output."""
    path = folder / "haproxy.cfg"
    path.write_text(config)
    assert HAPROXY is not None
    proc = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True,
                          timeout=t(30), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def directive(config: str, name: str) -> list[str]:
    """The arguments of every line starting with ``name`` (comments skipped)."""
    found = []
    for line in config.splitlines():
        words = line.split("#", 1)[0].split()
        if words[: len(name.split())] == name.split():
            found.append(" ".join(words[len(name.split()):]))
    return found


def test_shipped_config_is_the_generators_output() -> None:
    """deploy/haproxy.cfg is exactly what deploy/haproxy.py writes for the arguments it quotes."""
    shipped = SHIPPED.read_text()
    argv = gen.command_in(shipped)
    assert "--tls-cert" in argv and argv.count("--server") == 3
    assert render(argv) == shipped, "regenerate deploy/haproxy.cfg with the command in its header"


def test_generator_needs_only_the_standard_library() -> None:
    """python -I -S deploy/haproxy.py (no site-packages at all) prints the configuration."""
    argv = EXAMPLES["two nodes and stats"]
    proc = subprocess.run([sys.executable, "-I", "-S", str(GENERATOR), *argv],
                          capture_output=True, text=True, timeout=t(30), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == render(argv)


def test_routing_rules_are_in_every_configuration() -> None:
    """Hash on the session ID, consistently, no bounded load, health checks on GET /health."""
    config = render(EXAMPLES["two nodes and stats"])
    set_sid = directive(config, "http-request set-var(txn.sid,ifnotempty)")
    assert set_sid == ["path,field(3,/) if { path_beg /call/ /logs/ }",
                       "url_param(sessionId) unless { var(txn.sid) -m found }",
                       "url_param(callSid) unless { var(txn.sid) -m found }"]
    assert directive(config, "balance") == ["hash var(txn.sid)"]
    assert directive(config, "hash-type") == ["consistent"]
    assert directive(config, "hash-balance-factor") == []  # named only in a comment: why not
    assert directive(config, "http-check send") == [
        "meth GET uri /health ver HTTP/1.1 hdr Host relay"]
    assert directive(config, "http-check expect") == ["status 200"]
    assert directive(config, "option forwardfor") == [""]
    assert directive(config, "http-request del-header") == ["X-Forwarded-For"]


def test_tunnel_timeout_outlasts_a_session() -> None:
    """timeout tunnel and hard-stop-after are above relay's RELAY_MAX_SESSION_S default."""
    config = render(EXAMPLES["one node"])
    max_session = Settings().max_session_s
    assert seconds(directive(config, "timeout tunnel")[0]) > max_session
    assert seconds(directive(config, "hard-stop-after")[0]) > max_session
    assert seconds(directive(config, "timeout tunnel")[0]) > Settings().ping_interval_s


def test_server_ids_come_from_the_names_alone() -> None:
    """Each server's id depends on its name only: not on the order, nor on the other servers."""
    def ids(*servers: str) -> dict[str, str]:
        argv = ["--bind", ":80"]
        for server in servers:
            argv += ["--server", server]
        return {line.split()[0]: line.split()[-1] for line in directive(render(argv), "server")}

    three = ids("n1=10.0.0.1:1", "n2=10.0.0.2:1", "n3=10.0.0.3:1")
    assert three == ids("n3=10.0.0.3:1", "n1=10.0.0.1:1", "n2=10.0.0.2:1")
    assert ids("n1=10.0.0.1:1", "n3=10.0.0.9:2") == {"n1": three["n1"], "n3": three["n3"]}
    assert len(set(three.values())) == 3
    assert all(0 < int(value) <= gen.MAX_SERVER_ID for value in three.values())


@pytest.mark.parametrize("argv", [
    ["--bind", ":80", "--server", "n1=127.0.0.1:1", "--server", "n1=127.0.0.1:2"],
    ["--bind", "localhost", "--server", "n1=127.0.0.1:1"],
    ["--bind", ":80", "--server", "bad name=127.0.0.1:1"],
    ["--bind", ":80", "--server", "n1=127.0.0.1:1", "--check-inter", "soon"],
], ids=["same name twice", "no port", "name with a space", "bad duration"])
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    """The generator exits 2 with a message instead of writing a configuration HAProxy refuses."""
    proc = subprocess.run([sys.executable, str(GENERATOR), *argv], capture_output=True,
                          text=True, timeout=t(30), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("deploy/haproxy.py: "), proc.stderr


@needs_haproxy
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_generated_configs_pass_haproxy_check(name: str, tmp_path: Path) -> None:
    """haproxy -c accepts what the generator writes."""
    argv = [str(tmp_path / "admin.sock") if arg == "ADMIN_SOCKET" else arg
            for arg in EXAMPLES[name]]
    code, output = haproxy_check(render(argv), tmp_path)
    assert code == 0, output


@needs_haproxy
@pytest.mark.skipif(OPENSSL is None, reason="openssl not found: it makes the test certificate")
def test_shipped_config_passes_haproxy_check(tmp_path: Path) -> None:
    """haproxy -c accepts deploy/haproxy.cfg once its certificate path names a real PEM."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=relay.example.com", "-keyout", str(key), "-out", str(cert)],
                   capture_output=True, timeout=t(60), check=True)
    pem = tmp_path / "relay.pem"
    pem.write_bytes(cert.read_bytes() + key.read_bytes())
    argv = gen.command_in(SHIPPED.read_text())
    argv[argv.index("--tls-cert") + 1] = str(pem)
    argv[argv.index("--admin-socket") + 1] = str(tmp_path / "admin.sock")
    code, output = haproxy_check(render(argv), tmp_path)
    assert code == 0, output
