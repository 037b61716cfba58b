"""The model side: the OpenAI Realtime client, the built-in local model, and the beta/GA dialect."""
