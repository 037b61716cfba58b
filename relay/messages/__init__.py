"""The wire formats relay speaks, typed: Twilio Media Streams, the browser's /logs protocol, the Realtime model's events and its beta dialect."""
