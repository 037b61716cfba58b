"""The outside services: the OpenAI Realtime client and the built-in local model, Twilio REST and TwiML, HeyGen."""
