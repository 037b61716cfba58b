"""Who may do what: admission, frontend tokens, Twilio signatures, limits."""
