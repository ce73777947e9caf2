"""Serving mode: `lab serve` (the managed vLLM server, lab.backends.server) and a bounded load
test against any OpenAI-compatible server."""
