"""Entry point of the trading run for ``ray job submit``, RayJob and tests.

Example:
    ray job submit --working-dir . -- python -m jobs.run --config configs/local.yaml --replay
"""

from __future__ import annotations

import argparse
import json
import sys

from cluster.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    """Run the topology once; print the summary as JSON. Return the exit code."""
    ap = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__)
    ap.add_argument("--config", default=None, help="YAML config (default: configs/local.yaml)")
    ap.add_argument("--replay", action="store_true", help="simulated time, as fast as possible")
    ap.add_argument("--duration", type=float, default=None, help="seconds to run")
    ap.add_argument("--events", type=int, default=None, help="stop after N market events")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from cluster.serve_mode import apply_serve_mode

    apply_serve_mode(cfg)  # before ray.serve is imported and Ray starts
    from cluster.runner import run_pipeline

    summary = run_pipeline(cfg, replay=args.replay, duration_s=args.duration, events=args.events)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
