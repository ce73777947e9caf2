"""Serving mode: a managed OpenAI-compatible server and load generation against it."""
