"""Run one experiment (or a multirun sweep with -m). See README.md; `python run.py --help` lists the groups."""

import hydra
from omegaconf import DictConfig

import harness
from harness.cli import entry_point
from harness.config.overrides import check_command_line


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float:
    with entry_point():
        record = harness.run(cfg)
    return record.get(record["selection/metric"], float("nan"))  # the sweeper / Optuna objective


if __name__ == "__main__":
    check_command_line()  # a mistyped key, group option or broken file: one line naming the fix, before Hydra
    main()
