"""The benchmark (scripts/bench.py) runs end to end, and its frame accounting is right.

The smoke test runs the real benchmark as a subprocess against relay and the minimal baseline
(2 calls, 1 s); the others check, without sockets, how a simulated caller classifies what
comes back and how a run is judged.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
pytest.importorskip("psutil", reason="scripts/bench.py needs psutil: install the test extras")

import bench  # a script beside the package, not an installed module


def test_bench_smoke_both_kinds(tmp_path: Path) -> None:
    """A 2-call, 1-second run of relay and the baseline loses nothing and reports every figure."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "bench.py"), "--calls", "2", "--duration", "1",
         "--relay", "both", "--json", str(out), "--settle", "0"],  # no waiting for a quiet machine
        capture_output=True, text=True, timeout=15, cwd=SCRIPTS.parent, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    runs = {r["kind"]: r for r in doc["runs"]}
    assert set(runs) == {"relay", "baseline"}
    for kind, r in runs.items():
        assert r["calls"] == r["calls_live"] == 2, kind
        assert r["frames_sent"] == 2 * 50, kind  # 1 s of 20 ms frames per call
        assert r["frames_received"] == r["frames_sent"], kind
        assert r["lost"] == r["misrouted"] == r["duplicates"] == r["untagged"] == 0, kind
        assert r["wrong_stream_sid"] == r["protocol_errors"] == 0, kind
        assert 0 < r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] < 1000, kind
        assert r["relay_cpu_s"] > 0 and r["cpu_s_per_call_min"] > 0, kind
        assert r["rss_idle_kib"] > 0 and r["rss_at_n_kib"] > 0, kind
        assert r["slip_p99_ms"] is not None and r["loadgen_cpu_pct"] >= 0, kind
        assert r["relay_exit"] is None, kind
        assert r["verdict"]["text"].startswith(("holds", "fails")), kind
    assert runs["relay"]["marks_echoed"] > 0  # relay tracks playback with marks; the baseline does not
    assert [x["calls"] for x in doc["ratios"]] == [2]
    assert "relay" in proc.stdout and "baseline" in proc.stdout


def _media(stream_sid: str, index: int, seq: int) -> bytes:
    tag = base64.b64encode(bench.TAG.pack(bench.TAG_MAGIC, index, seq)).decode()
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": tag + bench._TAIL_B64.decode()}}).encode()


async def test_caller_classifies_echoes() -> None:
    """A caller counts its own frames once, spots other calls' frames and reports gaps as lost."""
    stats = bench.LoadStats(lo=1, hi=4)
    call = bench.SimCall("127.0.0.1:1", index=7, session_id="s", stats=stats, frames=6)
    call.seq = 4  # frames 0 (probe) to 4 were sent
    call.on_text(_media(call.stream_sid, 7, 0))
    call.on_text(_media(call.stream_sid, 7, 1))
    call.on_text(_media(call.stream_sid, 7, 1))
    call.on_text(_media(call.stream_sid, 8, 2))
    call.on_text(_media("MZother", 7, 3))
    call.on_text(b'{"event":"mark","streamSid":"x","mark":{"name":"m1"}}')
    assert call.live.done()
    assert (stats.received, stats.duplicates, stats.misrouted) == (2, 1, 1)
    assert stats.wrong_stream_sid == 1 and stats.marks == 1 and len(stats.latencies) == 2
    assert call.lost_in_window() == 2  # frames 2 (sent to call 8) and 4 never came back


def _run(**changes: Any) -> dict[str, Any]:
    run = {"relay_exit": None, "calls": 250, "calls_live": 250, "lost": 0, "misrouted": 0,
           "p99_ms": 20.0, "cpu_s_per_call_min": 0.2, "kib_per_session": 100.0,
           "loadgen_cpu_pct": 40.0, "model_cpu_pct": None, "pinned": True, "slip_p99_ms": 1.0}
    return run | changes


@pytest.mark.parametrize(
    ("changes", "holds", "text"),
    [
        ({}, True, "holds"),
        ({"p99_ms": 60.0}, False, "fails: p99 60.0>50 ms"),
        ({"lost": 3, "calls_live": 249}, False, "fails: 1 calls not live, loss 3"),
        ({"cpu_s_per_call_min": 0.3}, True, "holds (over budget: CPU 0.3>0.25)"),
        ({"slip_p99_ms": 9.0}, True, "holds [HARNESS-LIMITED: tick slip p99 9.0 ms]"),
        ({"other_load_relay_core_pct": 40.0}, True,
         "holds [NOISY: other processes used 40% of the relay core]"),
    ],
)
def test_judge_names_each_criterion(changes: dict[str, Any], holds: bool, text: str) -> None:
    """The verdict says which criterion failed, what is over budget and when not to trust it."""
    verdict = bench.judge(_run(**changes))
    assert verdict["holds"] is holds
    assert verdict["text"] == text
