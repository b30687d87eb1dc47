"""Caller identification, authorization policy, and the typed reasons for refusal."""
