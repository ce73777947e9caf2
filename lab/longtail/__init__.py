"""The long tail: worst-case input library (perturbations), distribution-shift checklist,
cohort tails and variance-aware retry policies."""
