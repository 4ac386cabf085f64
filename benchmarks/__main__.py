"""python -m benchmarks [--quick | --check] [--json] [--only NAME ...]"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys

BENCHMARKS = ["classify", "visualize", "units", "batch", "construct", "transforms", "lucent", "atlas", "coldstart",
              "occlusion", "memory", "profile", "graph", "jax_networks", "attribution"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="few repeats and the smallest cases (a smoke run)")
    p.add_argument("--check", action="store_true",
                   help="only the correctness checks: the quick cases, each timed call run once (CI)")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    p.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these benchmarks")
    args = p.parse_args(argv)

    import jax
    import torch

    from . import _harness

    _harness.CHECK_ONLY = args.check

    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    for name in args.only or BENCHMARKS:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(mod.run(args.quick or args.check))
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, jax {jax.__version__} "
               f"({jax.default_backend()}), torch {torch.__version__} ({torch.get_num_threads()} threads)")  # fmt: skip
    if args.json:
        print(json.dumps({"machine": machine, "results": [r.as_dict() for r in rows]}, indent=2))
    else:
        from ._harness import table

        print(machine)
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
