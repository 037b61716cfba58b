"""scripts/fleet starts Redis, relay nodes and HAProxy on this machine, reports them, stops them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path

from relay_sim.fleet import clean_environment
from relay_sim.frontend import SimulatedFrontend
from relay_sim.processes import free_port, group_members, kill_group
from relay_sim.twilio_call import SimulatedCall

from tests.fleet.services import needs_fleet
from tests.timing import WAIT, t

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "scripts" / "fleet"


async def fleet_command(*args: str) -> tuple[int, str]:
    """Run scripts/fleet with relay's own variables (OPENAI_API_KEY too) out of its environment."""
    proc = await asyncio.create_subprocess_exec(
        str(FLEET), *args, cwd=ROOT, env=clean_environment(), stdin=subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), t(60))
    return proc.returncode or 0, out.decode()


@needs_fleet
async def test_up_status_and_down(tmp_path: Path) -> None:
    """up prints the URLs, a call pairs through HAProxy, status says all is up, down stops all."""
    run_dir = tmp_path / "fleet"
    port = free_port()
    code, out = await fleet_command("up", "--nodes", "2", "--port", str(port),
                                    "--run-dir", str(run_dir))
    state = json.loads((run_dir / "state.json").read_text()) if code == 0 else {}
    pids = [e["pid"] for e in (state.get("haproxy"), state.get("redis"), *state.get("nodes", []))
            if e]
    try:
        assert code == 0, out
        assert f"ws://127.0.0.1:{port}" in out and "redis://127.0.0.1:" in out
        assert [node["name"] for node in state["nodes"]] == ["n1", "n2"]
        for node in state["nodes"]:
            assert node["url"] in out and (run_dir / f"{node['name']}.log").is_file()

        sid = str(uuid.uuid4())
        url = f"ws://127.0.0.1:{port}"
        async with await SimulatedFrontend.connect(url, f"/logs/{sid}") as frontend, \
                await SimulatedCall.connect(url, f"/call/{sid}") as call:
            await call.start()
            associated = await frontend.wait_for("session.associated", timeout=WAIT)
            assert associated["callSid"] == call.call_sid

        code, out = await fleet_command("status", "--run-dir", str(run_dir))
        assert code == 0, out
        assert "n1 UP" in out and "n2 UP" in out and "PONG" in out

        code, out = await fleet_command("down", "--run-dir", str(run_dir))
        assert code == 0, out
        assert "stopped 4 of 4 processes" in out
        assert not (run_dir / "state.json").exists()
        assert not any(group_members(pid) for pid in pids)
        code, out = await fleet_command("status", "--run-dir", str(run_dir))
        assert code == 3, out
    finally:
        for pid in pids:  # whatever failed above, leave nothing running
            kill_group(pid)


@needs_fleet
async def test_up_refuses_a_taken_port(tmp_path: Path) -> None:
    """up says which port is taken and starts nothing."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out = await fleet_command("up", "--nodes", "1", "--port", str(port),
                                        "--run-dir", str(tmp_path))
    finally:
        server.close()
        await server.wait_closed()
    assert code == 1 and f"port {port} is taken" in out, out
    assert not (tmp_path / "state.json").exists()


async def test_status_and_down_without_a_fleet(tmp_path: Path) -> None:
    """status exits 3 and down does nothing when no fleet is up."""
    code, out = await fleet_command("status", "--run-dir", str(tmp_path))
    assert code == 3 and "no fleet is up" in out, out
    code, out = await fleet_command("down", "--run-dir", str(tmp_path))
    assert code == 0 and "no fleet is up" in out, out


@needs_fleet
def test_install_script_is_quiet_when_both_are_installed() -> None:
    """scripts/install_fleet_services.sh exits 0 at once when redis-server and haproxy exist."""
    proc = subprocess.run([str(ROOT / "scripts" / "install_fleet_services.sh")],
                          capture_output=True, text=True, timeout=t(30), check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "install_fleet_services: redis-server and haproxy already installed")
