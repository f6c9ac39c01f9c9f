"""The search command: what ``python run.py -m sweep=<search>`` does once Hydra hands it to the sweeper.

read the search (sweeper config + command line) -> check that a trial's config composes
create or load the study (resume: the total counts over every call, never per call)
launch min(n_workers, trials still missing) workers with the configured Hydra launcher and wait;
if a worker died (kill -9, pre-emption), launch again until the study holds its total
write the reports (best.yaml, trials.csv, plots) beside the study
"""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import optuna
import yaml
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from optuna.distributions import distribution_to_json, json_to_distribution

from harness.config import selection_of, validate_config
from harness.errors import ConfigError, HarnessError
from harness.io import atomic_write_text
from harness.redact import redact
from harness.rundir import records
from harness.rundir.guard import guarded_node
from harness.rundir.identity import semantic_config
from harness.search.report import write_reports
from harness.search.space import format_override, param_name, parse_search_space, split_overrides
from harness.search.study import SEARCH_FILE, Search, check_search, create_study, storage_label, tally
from harness.search.worker import work

log = logging.getLogger(__name__)

MAX_IDLE_ROUNDS = 2  # launches in a row that finish no trial: the workers are broken, stop and say where to look
IN_PROCESS_LAUNCHERS = (
    "hydra_plugins.harness_launchers.launchers.LocalLauncher",
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher",
)


def run_search(spec: dict, arguments: list, hydra_context, config: DictConfig) -> dict:
    search = build_search(spec, arguments, config)
    trial_config = check_trial_config(search, hydra_context.config_loader, config)
    search.identity = study_identity(search, trial_config)
    study = create_study(search)
    check_same_study(search, study)
    atomic_write_yaml(Path(search.study_dir) / SEARCH_FILE, describe(search))
    log.info(
        "study %s in %s: %d/%d finished; objective %s (%s); searching %s",
        search.study_name,
        storage_label(search),
        len(tally(study.get_trials(deepcopy=False)).done),
        search.n_trials,
        search.objective,
        search.direction,
        ", ".join(param_name(k) for k in search.space),
    )
    if search.n_workers > 1 and OmegaConf.select(config, "hydra.launcher._target_") in IN_PROCESS_LAUNCHERS:
        log.info(
            "hydra/launcher=local runs the %d workers one after another in this process; use "
            "hydra/launcher=submitit_local (or slurm) for parallel workers",
            search.n_workers,
        )
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=hydra_context,
        config=config,
        task_function=partial(work, search=search, master_config=config, config_loader=hydra_context.config_loader),
    )
    first_job, idle = 0, 0
    while True:
        done = len(tally(study.get_trials(deepcopy=False)).done)
        if done >= search.n_trials:
            break
        n_jobs = min(search.n_workers, search.n_trials - done)
        errors = launch(launcher, [list(search.fixed)] * n_jobs, first_job)
        first_job += n_jobs
        for err in errors:
            log.warning("a search worker ended abnormally: %s", err)
        progressed = len(tally(study.get_trials(deepcopy=False)).done) > done
        idle = 0 if progressed else idle + 1
        if idle >= MAX_IDLE_ROUNDS:
            raise HarnessError(
                f"{idle} launches of search workers finished no trial ({'; '.join(errors) or 'no error'}); "
                f"see the worker logs under {config.hydra.sweep.dir}"
            )
    return write_reports(study, search)


def launch(launcher, job_overrides: list, first_job: int) -> list:
    """Run the worker jobs and wait for them; the errors of those that failed or died."""
    try:
        returns = launcher.launch(job_overrides, initial_job_idx=first_job)
    except Exception as err:  # submitit: a job whose process was killed has no result
        return [f"{type(err).__name__}: {err}"]
    errors = []
    for ret in returns:
        if ret.status == JobStatus.FAILED:
            try:
                _ = ret.return_value  # re-raises the job's exception
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")
    return errors


# ----------------------------------------------------------------------------------------------- the search's settings
def build_search(spec: dict, arguments: list, config: DictConfig) -> Search:
    """The sweeper config and the command line -> a :class:`Search`.

    The command line's plain overrides fix values for every trial (and win over the sweep file); its
    sweep-syntax overrides (``'optimizer.lr=tag(log, interval(1e-4, 1e-2))'``) join the search space.
    """
    space, fixed = parse_search_space(spec.get("params") or {})
    cli_space, cli_fixed = split_overrides(list(arguments))
    fixed_keys = {line.split("=", 1)[0] for line in cli_fixed}
    space = {k: d for k, d in {**space, **cli_space}.items() if k not in fixed_keys}
    selection = selection_of(config)
    if selection.split != "val":  # protocol=authors: the epoch is chosen on test; a search would tune on it too
        raise ConfigError(
            "a search never tunes on the test split, and protocol=authors selects on it; search under "
            "protocol=clean or protocol=reality_check"
        )
    known = set(Search.__dataclass_fields__) - {"space", "fixed", "objective", "direction", "identity"}
    unknown = set(spec) - known - {"params", "_target_", "_recursive_"}
    if unknown:
        raise ConfigError(f"hydra.sweeper has unknown keys {sorted(unknown)}; known: {sorted(known | {'params'})}")
    search = Search(
        space=space,
        fixed=fixed + cli_fixed,
        objective=selection.key,
        direction=selection.direction,
        **{k: v for k, v in spec.items() if k in known},
    )
    check_search(search)
    return search


def check_trial_config(search: Search, config_loader, config: DictConfig) -> DictConfig:
    """Compose one trial's config and validate it before launching anything: a wrong key, group or value fails
    here, in one line, instead of failing every trial of the study."""
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    values = {key: representative(dist) for key, dist in search.space.items()}
    overrides = list(search.fixed) + [format_override(key, value) for key, value in values.items()]
    try:
        cfg = config_loader.load_sweep_config(config, overrides)
    except Exception as err:
        raise ConfigError(f"a trial's config does not compose: {' '.join(str(err).split())}") from None
    validate_config(cfg)
    return cfg


def study_identity(search: Search, cfg: DictConfig) -> dict:
    """What a study's trials share: a trial's semantic config (harness.rundir.identity: without paths, trackers,
    progress bars, the launcher and the sweeper's n_trials / n_workers) and its seed, flattened, without the
    searched keys; redacted as search.yaml is."""
    with read_write(cfg), open_dict(cfg):
        cfg.pop("hydra", None)
    searched = {key.lstrip("+") for key in search.space} | {"search"}
    flat = records.flatten({**semantic_config(cfg), "seed": cfg.get("seed")})
    return redact({k: v for k, v in flat.items() if not any(k == s or k.startswith(f"{s}.") for s in searched)})


def check_same_study(search: Search, study) -> None:
    """Refuse to add trials of another experiment to a study (another fixed semantic setting): one line naming
    the differences; a study without trials, or whose search.yaml predates identities, takes this one."""
    path = Path(search.study_dir) / SEARCH_FILE
    if not path.exists() or not study.get_trials(deepcopy=False):
        return
    before = (yaml.safe_load(path.read_text()) or {}).get("identity") or {}
    if not before or before == search.identity:
        return
    keys = sorted(set(before) | set(search.identity), key=str)
    diff = [k for k in keys if before.get(k, "(unset)") != search.identity.get(k, "(unset)")]
    shown = "; ".join(f"{k}: {before.get(k, '(unset)')} -> {search.identity.get(k, '(unset)')}" for k in diff[:4])
    more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
    raise ConfigError(
        f"study {search.study_name} in {storage_label(search)} holds trials of another setting ({shown}{more}); "
        f"a study mixes no two experiments: give the same fixed overrides to extend it, or another "
        f"hydra.sweeper.study_name for a new study"
    )


def representative(dist):
    if hasattr(dist, "choices"):
        return dist.choices[0]
    return dist.low


def describe(search: Search) -> dict:
    """The study directory's search.yaml: enough to reopen the study and report on it; never a URL."""
    data = {k: getattr(search, k) for k in Search.__dataclass_fields__ if k != "space"}
    data["space"] = {key: json.loads(distribution_to_json(dist)) for key, dist in search.space.items()}
    return redact(data)


def read_search(study_dir: Path) -> Search:
    path = Path(study_dir) / SEARCH_FILE
    if not path.exists():
        raise ConfigError(
            f"{path} does not exist; give the study directory a search wrote (results/search/<study_name>)"
        )
    try:
        data = yaml.safe_load(path.read_text())
        data["space"] = {key: json_to_distribution(json.dumps(d)) for key, d in data["space"].items()}
        data["study_dir"] = str(Path(study_dir))
        for key in ("sampler", "pruner"):  # never instantiated here, but checked like any file from disk
            data[key] = guarded_node(data.get(key), key, str(path), also=optuna_targets())
        return Search(**data)
    except (yaml.YAMLError, TypeError, KeyError, ValueError, AttributeError) as err:
        raise ConfigError(
            f"{path} is damaged ({type(err).__name__}); run the search command again to rewrite it"
        ) from None


def optuna_targets() -> frozenset:
    """The samplers and pruners a study may name (any of Optuna's own)."""
    return frozenset(
        [f"optuna.samplers.{n}" for n in optuna.samplers.__all__]
        + [f"optuna.pruners.{n}" for n in optuna.pruners.__all__]
    )


def atomic_write_yaml(path: Path, data: dict) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
