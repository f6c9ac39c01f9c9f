"""Reports on demand: ``python -m harness.search results/search/<study>`` rewrites best.yaml, trials.csv and
the plots of a study (while it runs, too) and prints where it stands. The storage is found from the study
directory's search.yaml (for storage=env, from the environment variable it names)."""

from __future__ import annotations

import logging
import sys

import optuna

from harness.cli import ArgumentParser, entry_point
from harness.errors import ConfigError
from harness.search.study import open_storage


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m harness.search", description=__doc__)
    parser.add_argument("study_dir", help="the study directory, e.g. results/search/tune_eps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # lazy: the driver brings torch, the report matplotlib; `--help` stays free of them
    from harness.search.driver import read_search
    from harness.search.report import write_reports

    with entry_point():
        search = read_search(args.study_dir)
        storage = open_storage(search)
        try:
            study = optuna.load_study(study_name=search.study_name, storage=storage)
        except KeyError:
            raise ConfigError(
                f"the storage of {args.study_dir} holds no study {search.study_name!r}; run the search "
                f"command first (python run.py -m sweep=<search>)"
            ) from None
        write_reports(study, search)
    return 0


if __name__ == "__main__":
    sys.exit(main())
