"""Compare a sweep run on Ray with the same sweep run locally, cell by cell (the cell's axes
without node_kind match the local cell's), or an n-of-k run on Ray replicas with the local run,
sample by sample: tokens and logprobs must be bitwise equal.

    python experiments/ray-cluster/compare.py RAY_RUN LOCAL_RUN
    python experiments/ray-cluster/compare.py --samples RAY_RUN LOCAL_RUN
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def key(entry: dict[str, Any]) -> str:
    """A cell's axes without node_kind (where it ran, not what it computed)."""
    return json.dumps({k: v for k, v in entry["cell"].items() if k != "node_kind"}, sort_keys=True)


def cells(run: str) -> list[dict[str, Any]]:
    lines = (Path(run) / "cells.jsonl").read_text().splitlines()
    return sorted((json.loads(line) for line in lines), key=lambda e: json.dumps(e["cell"]))


def main(ray_run: str, local_run: str) -> int:
    on_ray, local = cells(ray_run), {key(e): e for e in cells(local_run)}
    nodes = {}
    for i, line in enumerate((Path(ray_run) / "nodes.jsonl").read_text().splitlines()):
        nodes[json.loads(line)["key"]] = f"node {i + 1}"
    equal = 0
    for cell in on_ray:
        other = local[key(cell)]
        same = all(
            o["output_token_ids"] == other["outputs"][p]["output_token_ids"]
            and o["token_logprobs"] == other["outputs"][p]["token_logprobs"]
            for p, o in cell["outputs"].items()
        )
        equal += same
        where = cell["placement"]
        print(
            f"dtype={cell['cell']['dtype']:8} batch={cell['cell']['batch_size']} "
            f"node_kind={cell['cell']['node_kind']:7} ran on {nodes[where['node']]} "
            f"({where['threads']} thread): tokens and logprobs "
            f"{'bitwise equal to' if same else 'DIFFER from'} the local 1-thread run"
        )
    print(f"{equal} of {len(on_ray)} cells bitwise equal; {len(nodes)} nodes")
    return 0 if equal == len(on_ray) else 1


def samples(run: str) -> dict[str, dict[str, Any]]:
    lines = (Path(run) / "samples.jsonl").read_text().splitlines()
    return {e["key"]: e for e in map(json.loads, lines)}


def main_samples(ray_run: str, local_run: str) -> int:
    on_ray, local = samples(ray_run), samples(local_run)
    equal = 0
    where: dict[str, int] = {}
    for case, line in on_ray.items():
        pairs = zip(line["generations"], local[case]["generations"], strict=True)
        equal += all(
            a["output_token_ids"] == b["output_token_ids"]
            and a["token_logprobs"] == b["token_logprobs"]
            for a, b in pairs
        )
        replica = str(line.get("placement", {}).get("replica", "?"))
        where[replica] = where.get(replica, 0) + 1
    print(
        f"{equal} of {len(on_ray)} cases (k={len(line['generations'])}) bitwise equal to the "
        f"local 1-thread run; cases per replica: {dict(sorted(where.items()))}"
    )
    return 0 if equal == len(on_ray) == len(local) else 1


if __name__ == "__main__":
    if sys.argv[1] == "--samples":
        sys.exit(main_samples(*sys.argv[2:4]))
    sys.exit(main(*sys.argv[1:3]))
