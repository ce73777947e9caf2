"""The cpu-threads result as Markdown: every num_threads pair of the sweep (2 threads against 1,
everything else fixed) and the generate time per cell at each thread count.

    python experiments/cpu-threads/tables.py runs/cpu-threads
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(run: Path) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    print("| 2 threads vs 1, at | tokens differ | logprobs differ | max abs dlogprob | first div |")
    print("|---|---|---|---|---|")
    for r in metrics["pairs"]:
        if r["axis"] == "num_threads":
            firsts = ", ".join(map(str, r["first_divergences"])) or "-"
            delta = f"{r['max_abs_logprob_delta']:.3g}"
            counts = f"{r['tokens_differ']}/{r['outputs_compared']} | {r['logprobs_differ']}"
            print(f"| {r['fixed']} | {counts} | {delta} | {firsts} |")
    cells = [json.loads(line) for line in (run / "cells.jsonl").read_text().splitlines()]
    print("\n| cell | threads (recorded) | generate s |\n|---|---|---|")
    for c in sorted(cells, key=lambda c: json.dumps(c["cell"], sort_keys=True)):
        a = c["cell"]
        label = f"{a['backend']} {a['dtype']} batch {a['batch_size']}"
        threads = (c.get("placement") or {}).get("threads")
        seconds = c.get("timings", {}).get("generate_s")
        shown = f"{seconds:.1f}" if seconds else f"failed: {c.get('error')}"
        print(f"| {label} | {threads} | {shown} |")
    for p in metrics.get("hardware", {}).get("places", []):
        print(f"\nhardware: {p['device_name']} ({p['threads']} threads): {p['cells']} cells")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cpu-threads"))
