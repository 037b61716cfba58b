"""Simulated peers for demos, benchmarks and tests: a Twilio caller, a browser, a Realtime model server."""
