"""Tests of relay.providers: the model, Twilio REST, HeyGen and Azure, against fakes on loopback."""
