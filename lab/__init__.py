"""The determinism and variance lab: measure how much LLM outputs vary on your own hardware."""

__version__ = "0.1.0"

# First thing: lab.settings snapshots the user's environment variables before any engine
# (vLLM sets its own on import) can change them; the environment record reports that snapshot.
from lab import settings as _settings  # noqa: E402, F401
