"""n-of-k variance: sample every case k times and measure the distribution, not one draw.

examples.py   example python checks, used by the bundled case set (cases and their checks
              are lab.cases)
stats.py      Wilson intervals, pass@k, pass^k, quantiles, CV across runs, bootstrap
success.py    the headline, intervals and curves of a [C, k] pass matrix (n-of-k and agent
              reports alike)
diversity.py  one batched embedding pass; per-case similarity, Vendi, clusters, entropy
config.py     SampleConfig (YAML + flags) and the gate thresholds
runner.py     resumable sampling through a backend (RunStore), progress on stderr
analyze.py    per-case and across-case metrics, cohorts, cost frame
report.py     the run directory's artifacts; render.py the Markdown and HTML
gate.py       launch thresholds -> reasons

lab sample --cases bundled:basic --k 32 --backend vllm --out runs/basic
lab sample-report runs/basic --gate min_p5=0.2
"""
