"""The benchmark's load generator: lean simulated peers, the relays under test, the report.

``scripts/bench.py`` is the command line over this package. The modules, from the wire up:

- :mod:`relay_sim.frames` (shared with the echo model :mod:`relay_sim.echo_model`): RFC 6455
  framing and handshake on ``asyncio.Protocol``, no websockets queues or tasks.
- :mod:`~relay_sim.load.client`: the WebSocket client protocol every peer here is built on.
- :mod:`~relay_sim.load.peers`: a Twilio call with tagged frames, a browser on ``/logs``.
- :mod:`~relay_sim.load.schedule`: one timer chain sending every call's frame each 20 ms.
- :mod:`~relay_sim.load.stats`: what the peers of one run count.
- :mod:`~relay_sim.load.drive`: one run against a listening relay (connect, stream, measure).
- :mod:`~relay_sim.load.processes`: pinning, child processes, CPU and memory readings.
- :mod:`~relay_sim.load.subjects`: relay, another checkout of it, the Python and Node baselines.
- :mod:`~relay_sim.load.fakemodel`, :mod:`~relay_sim.load.tlscert`: the model each run talks to.
- :mod:`~relay_sim.load.runs`: a judged run per relay and variant; the ramp.
- :mod:`~relay_sim.load.verdict`, :mod:`~relay_sim.load.report`: targets, verdicts, tables.
"""
