"""``python -m harness.rundir migrate RESULTS [--dry-run]``: bring run directories to the current identity version."""

from __future__ import annotations

import logging

from harness.cli import ArgumentParser, entry_point
from harness.rundir.migrate import migrate


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m harness.rundir", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    move = sub.add_parser("migrate", help="rename run directories of an earlier identity version")
    move.add_argument("results", help="the results folder (paths.results), e.g. results")
    move.add_argument("--dry-run", action="store_true", help="say what would be renamed, change nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with entry_point():
        done = migrate(args.results, dry_run=args.dry_run)
    for old, new in done.renamed:
        print(f"{'would rename' if args.dry_run else 'renamed'} {old} -> {new.name}")
    for path, why in done.left:
        print(f"left as it is: {path}: {why}")
    print(done.summary())
    return 1 if done.left else 0


if __name__ == "__main__":
    raise SystemExit(main())
