"""Train the ensemble's models (if needed), save them to the registry and promote them.

Example:
    python -m jobs.train --config configs/local.yaml           # train only when missing/stale
    python -m jobs.train --config configs/local.yaml --force   # always retrain

Prints the production records as JSON on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cluster.config import ConfigError, load_config
from serve.registry import ModelRecord
from serve.training import ensure_models, summarise, train_models


def run(
    config: str | Path | None = None, force: bool = False, progress: bool = True
) -> dict[str, ModelRecord]:
    """Train (``force``) or ensure the production models of ``config``; return the records.

    Args:
        config: YAML config path (default ``configs/local.yaml``).
        force: Retrain even when valid production models exist.
        progress: Draw progress bars on stderr.
    """
    cfg = load_config(config)
    if force:
        return train_models(cfg, console_progress=progress)
    return ensure_models(cfg, console_progress=progress)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m jobs.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", default=None, help="YAML config (default configs/local.yaml)")
    parser.add_argument("--force", action="store_true", help="retrain even if models exist")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    ns = parser.parse_args(argv)
    try:
        records = run(ns.config, force=ns.force, progress=not ns.no_progress)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps(summarise(records), indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
