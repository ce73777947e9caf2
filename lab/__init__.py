"""The determinism and variance lab: measure how much LLM outputs vary on your own hardware."""

__version__ = "0.1.0"
