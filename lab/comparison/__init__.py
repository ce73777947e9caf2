"""Paired comparison of n-of-k runs and sweeps, drift, and sample-size planning."""
