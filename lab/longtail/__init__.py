"""The long tail: worst-case input library (perturbations), distribution-shift checklist
and variance-aware retry policies (cohort buckets are lab.cases.cohorts)."""
