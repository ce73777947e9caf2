"""Scale out on Ray: a sweep's engine configurations, or replicas of an n-of-k run's engine, as Ray
actors across GPUs and nodes, the driver the only writer of the run directory (`lab sweep CONFIG
--ray [ADDRESS]`, `lab sample --ray [ADDRESS] --replicas R`).

Ray is an optional extra (`pip install 'determinism-lab[ray]'`); nothing here imports it at
module level, so `import lab` and every local path work without it.

    cluster.py   connect to a cluster (auto, RAY_ADDRESS, ray://host:port) or start a local one
    worker.py    the actor: owns one engine, runs that configuration's cells (sweep.run_cell)
    sweep.py     the driver: one actor per engine configuration, results appended as they
                 finish, lost units retried on a fresh actor a bounded number of times
    sample.py    `lab sample --ray --replicas R` / `lab library run --ray`: R replicas of one
                 engine share the local run's engine calls (same grouping, same seeds)
    replica.py   the actor of sample.py: owns one engine, runs one planned call at a time
"""
