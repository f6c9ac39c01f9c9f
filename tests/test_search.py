"""The Optuna search (harness/search): search space, trial accounting, heartbeat, and real studies on digits.

The integration tests run the real command, ``python run.py -m sweep=tune_eps ...``, against a real SQLite
study, with tiny runs (2 epochs of 2 batches, no NMI); ``submitit_local`` gives real parallel worker processes.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import CONF, REPO, exit_code
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from search_kill import kill_a_worker_mid_trial

from harness import tables
from harness.errors import ConfigError
from harness.rundir import records
from harness.search.driver import read_search
from harness.search.space import format_override, parse_override, parse_search_space, split_overrides
from harness.search.study import (
    JournalHeartbeatStorage,
    Search,
    build_sampler,
    counted,
    is_surplus,
    open_storage,
    retry_root,
    tally,
)
from harness.search.worker import AskGate

TINY = [
    "trainer.epochs=2",
    "sampler.batches_per_epoch=2",
    "eval.nmi=false",
    "eval.raw_baseline=false",
    "trainer.progress=false",
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=5",
    "hydra.sweeper.poll_interval=0.5",
]
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def search_sweeps() -> list:
    """Every sweep file that is an Optuna search (uses the optuna_async sweeper). A family of searches is
    ``sweeps/<name>.yaml`` (shared settings, not a study itself) and one study per ``sweeps/<name>/<variant>.yaml``
    (``sweep=<name>/<variant>``, study ``<name>_<variant>``)."""
    root = REPO / "sweeps"
    names = [
        p.relative_to(root).with_suffix("").as_posix()
        for p in sorted(root.glob("**/*.yaml"))
        if "optuna_async" in p.read_text()
        or (p.parent != root and (p.parent.parent / f"{p.parent.name}.yaml").is_file())
    ]
    return sorted(n for n in names if not (root / n).is_dir())


def run_search(
    results: Path, *overrides, launcher: str = "local", timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "sweep=tune_eps",
        f"paths.results={results}",
        f"hydra/launcher={launcher}",
        *TINY,
        *overrides,
    ]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def load(results: Path, name: str = "tune_eps") -> optuna.Study:
    """The study as the search left it, through its study directory (any storage kind)."""
    search = read_search(results / "search" / name)
    return optuna.load_study(study_name=search.study_name, storage=open_storage(search))


def check_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# ----------------------------------------------------------------------------------------------- search space
def test_hydra_sweep_syntax_becomes_optuna_distributions():
    space, fixed = parse_search_space(
        {
            "a": "interval(0.01, 2.0)",
            "b": "tag(log, interval(1e-4, 1e-1))",
            "c": "int(interval(16, 256))",
            "d": "tag(log, int(interval(1, 64)))",
            "e": "range(1, 10, 3)",
            "f": "range(0.1, 1.0, 0.2)",
            "g": "choice(x, 'y z', 3, 0.5, true)",
            "loss": "multi_similarity,proxy_anchor",
            "trainer.epochs": 7,
        }
    )
    assert space["a"] == FloatDistribution(0.01, 2.0)
    assert space["b"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert space["c"] == IntDistribution(16, 256)
    assert space["d"] == IntDistribution(1, 64, log=True)
    assert space["e"] == IntDistribution(1, 7, step=3)  # Hydra's range excludes its stop: 1, 4, 7
    assert space["f"].low == pytest.approx(0.1) and space["f"].high == pytest.approx(0.9) and space["f"].step == 0.2
    assert space["g"] == CategoricalDistribution(["x", "y z", 3, 0.5, True])
    assert space["loss"] == CategoricalDistribution(["multi_similarity", "proxy_anchor"])
    assert fixed == ["trainer.epochs=7"]
    space, fixed = split_overrides(["+regularizer.x.gam1=interval(0, 1)", "seed=3"])
    assert list(space) == ["+regularizer.x.gam1"] and fixed == ["seed=3"]


@pytest.mark.parametrize(
    "bad",
    [
        "a=tag(lin, interval(0, 1))",
        "a=tag(log, interval(0, 1))",
        "a=interval(2, 1)",
        "a=tag(log, choice(1, 2))",
        "a=range(5, 1)",
        "a=choice([1, 2], [3])",
        "a=interval(0, 1",
    ],
)
def test_bad_search_parameters_are_one_line_config_errors(bad):
    with pytest.raises(ConfigError) as err:
        split_overrides([bad])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value", [0.123456789012345, 1e-30, 7, True, False, "proxy_anchor", "it's a,b", "1e-3"])
def test_trial_values_round_trip_through_overrides(value):
    parsed = parse_override(format_override("k", value)).value()
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("name", search_sweeps())
def test_every_search_sweep_composes_and_names_real_keys(name):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"sweep={name}"], return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)
    assert sweeper["_target_"].endswith("OptunaAsyncSweeper") and sweeper["study_name"] == name.replace("/", "_")
    space, _ = parse_search_space(sweeper["params"])
    assert space
    for key in space:
        assert key.startswith("+") or OmegaConf.select(cfg, key, default=None) is not None, key


# ----------------------------------------------------------------------------------------------- accounting
def make_search(tmp_path, storage="sqlite", **kw) -> Search:
    return Search(
        study_name="s",
        study_dir=str(tmp_path / "s"),
        objective="val/map@r",
        direction="maximize",
        space={"x": FloatDistribution(0, 1)},
        fixed=[],
        storage=storage,
        **kw,
    )


def test_a_study_counts_finished_trials_but_not_retried_or_surplus_ones(tmp_path):
    search = make_search(tmp_path, n_trials=4)
    study = optuna.create_study(study_name="s", storage=open_storage(search))
    dist = {"x": FloatDistribution(0, 1)}

    def add(state, value=None, system=None, user=None):
        study.add_trial(
            optuna.create_trial(
                state=state,
                value=value,
                params={"x": 0.5},
                distributions=dist,
                system_attrs=system or {},
                user_attrs=user or {},
            )
        )

    add(TrialState.COMPLETE, 0.5)  # 0
    add(TrialState.FAIL)  # 1: worker died, retried by 3
    add(TrialState.PRUNED, 0.1)  # 2
    add(TrialState.WAITING, system={"failed_trial": 1, "retry_history": [1]})  # 3: the retry of 1
    add(TrialState.FAIL, user={"fail_reason": "NonFiniteLossError: nan"})  # 4
    add(TrialState.FAIL, user={"surplus": True})  # 5
    trials = study.get_trials()
    counts = tally(trials)
    assert [t.number for t in counts.done] == [0, 2, 4]
    assert [t.number for t in counts.waiting] == [3] and counts.claimed == 4
    assert sorted({t.number for t in trials} - {t.number for t in counted(trials)}) == [1, 5]  # retried, surplus
    assert retry_root(trials[3]) == 1 and retry_root(trials[0]) == 0
    # trial 5 came after 4 counted trials (0, 2, 3, 4): a fifth would exceed the total of 4
    assert not is_surplus(trials, 4, 4) and is_surplus(trials, 6, 4)
    assert [t.number for t in counted(trials)] == [0, 2, 3, 4]


def count_then_ask(study_dir: str, total: int, gated: bool, start) -> None:
    """A worker's claim on a slot: count the study, think a while, ask when a slot is free (as worker.work)."""
    search = make_search(Path(study_dir).parent, n_trials=total)
    study = optuna.load_study(study_name="s", storage=open_storage(search))
    gate = AskGate(study_dir)
    start.wait(30)  # every worker is ready: they all reach the first count together
    for _ in range(total):
        if gated:
            gate.acquire()
        try:
            if tally(study.get_trials(deepcopy=False)).claimed >= total:
                return
            time.sleep(0.2)  # the window in which another worker may count the same free slot
            study.ask()
        finally:
            gate.release()


@pytest.mark.parametrize("gated", [True, False])
def test_workers_counting_and_asking_under_the_gate_never_exceed_the_total(tmp_path, gated):
    search = make_search(tmp_path, n_trials=3)
    optuna.create_study(study_name="s", storage=open_storage(search))
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(4)
    workers = [ctx.Process(target=count_then_ask, args=(search.study_dir, 3, gated, start)) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0] * 4
    n = len(optuna.load_study(study_name="s", storage=open_storage(search)).get_trials())
    if gated:
        assert n == 3
    else:  # the race the gate closes: every worker saw a free slot at once
        assert n > 3


def test_workers_and_resumed_commands_do_not_replay_one_random_sequence():
    spec = {"_target_": "optuna.samplers.RandomSampler", "seed": 0}

    def first_point(worker: int, existing: int) -> float:
        study = optuna.create_study(sampler=build_sampler(spec, worker, existing))
        return study.ask({"x": FloatDistribution(0, 1)}).params["x"]

    assert first_point(0, 0) == first_point(0, 0)  # reproducible
    assert len({first_point(0, 0), first_point(1, 0), first_point(0, 4)}) == 3  # another worker, a later command


def test_a_torn_journal_is_repaired_under_its_lock_for_a_worker_and_the_report(tmp_path, caplog):
    """A worker killed mid-append leaves a partial last line: a running worker's next append and
    ``python -m harness.search DIR`` repair it under the storage's lock (copy aside, drop the tail, one warning)."""
    import logging

    from harness.search.__main__ import main
    from harness.search.driver import atomic_write_yaml, describe
    from harness.search.study import create_study, load_study

    search = make_search(tmp_path, storage="journal", n_trials=3)
    create_study(search)
    atomic_write_yaml(Path(search.study_dir) / "search.yaml", describe(search))
    journal = Path(search.study_dir) / "study.journal"

    def objective(trial):
        return trial.suggest_float("x", 0, 1)

    load_study(search).optimize(objective, n_trials=1)
    worker = load_study(search, worker=1)  # a worker already running when another dies mid-append
    with open(journal, "ab") as f:
        f.write(b'{"op_code":5,"worker_id":"dead","trial_id":0,"par')
    with caplog.at_level(logging.WARNING, logger="harness"):
        worker.optimize(objective, n_trials=1)
    assert [t.state for t in load_study(search).get_trials()] == [TrialState.COMPLETE] * 2
    assert (journal.parent / "study.journal.torn").read_bytes().endswith(b'"par')
    assert "study.journal had a torn last line (49 bytes" in caplog.text and "the search goes on" in caplog.text
    with open(journal, "ab") as f:
        f.write(b'{"op_co')
    assert exit_code(main, [search.study_dir]) == 0  # the report command opens the storage: repaired there too
    assert (journal.parent / "study.journal.torn.1").exists() and journal.read_bytes().endswith(b"}\n")
    assert len(load_study(search).get_trials()) == 2


def wait_for(condition, timeout: float, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{condition.__name__} did not happen within {timeout} s"
        time.sleep(poll)


@pytest.mark.filterwarnings("ignore")
def test_journal_storage_heartbeat_fails_and_retries_a_silent_trial(tmp_path):
    search = make_search(tmp_path, storage="journal", heartbeat_interval=1, grace_period=2, max_retry=1)
    storage = open_storage(search)
    assert isinstance(storage, JournalHeartbeatStorage)
    study = optuna.create_study(study_name="s", storage=storage)
    alive, dead = study.ask({"x": FloatDistribution(0, 1)}), study.ask({"x": FloatDistribution(0, 1)})
    storage.record_heartbeat(dead._trial_id)

    def only_the_dead_one_is_stale() -> bool:
        storage.record_heartbeat(alive._trial_id)  # only this one still beats
        return storage._get_stale_trial_ids(study._study_id) == [dead._trial_id]

    wait_for(only_the_dead_one_is_stale, timeout=60)  # the event, not a guess at how long the grace period takes
    optuna.storages.fail_stale_trials(study)
    trials = optuna.load_study(study_name="s", storage=open_storage(search)).get_trials()  # a fresh reader
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]
    assert trials[2].params == trials[1].params and retry_root(trials[2]) == dead.number


# ----------------------------------------------------------------------------------------------- real studies
@pytest.mark.slow
def test_two_workers_reach_the_total_exactly_resume_adds_none_and_a_larger_total_adds_the_rest(results):
    proc = run_search(results, "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.seed=1", launcher="submitit_local")
    check_ok(proc)
    trials = load(results).get_trials()
    assert [t.number for t in trials] == list(range(6))  # no duplicate numbers, no surplus
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers took trials
    assert len({tuple(t.params.values()) for t in trials}) == 6  # parallel suggestions did not collapse
    run_dirs = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert len(set(run_dirs)) == 6
    for t, run_dir in zip(trials, run_dirs):
        record = records.read_record(run_dir)
        assert record["status"] == "finished" and record["config/search.trial"] == t.number
        assert record[record["selection/metric"]] == pytest.approx(t.value)
        assert record["config/regularizer.antico_pair.eps"] == pytest.approx(t.params["regularizer.antico_pair.eps"])
    study_dir = results / "search" / "tune_eps"
    for name in ("best.yaml", "trials.csv", "search.yaml", "history.png", "regularizer.antico_pair.eps.png"):
        assert (study_dir / name).exists(), name
    assert "postgresql" not in (study_dir / "search.yaml").read_text()
    stamps = {p: (p / "record.json").stat().st_mtime_ns for p in run_dirs}

    # the same search again (in-process workers this time: the launcher is no part of a study) adds nothing
    check_ok(run_search(results, "hydra.sweeper.n_trials=6", "hydra.sweeper.sampler.seed=1"))
    assert len(load(results).get_trials()) == 6  # and rewrites nothing
    assert {p: (p / "record.json").stat().st_mtime_ns for p in run_dirs} == stamps

    check_ok(run_search(results, "hydra.sweeper.n_trials=7", "hydra.sweeper.sampler.seed=1"))
    after = load(results).get_trials()
    assert [t.number for t in after] == list(range(7)) and all(t.state == TrialState.COMPLETE for t in after)
    assert [(t.params, t.value) for t in after[:6]] == [(t.params, t.value) for t in trials]
    assert {p: (p / "record.json").stat().st_mtime_ns for p in run_dirs} == stamps  # earlier runs untouched
    assert len({t.user_attrs["run_dir"] for t in after}) == 7

    study = load(results)
    assert study.metric_names == ["val/map@r"]  # optuna-dashboard names the objective, not "Objective 0"
    view = tables.make_tables([results], sweep="tune_eps", plots=False)  # the tables read the runs as a study
    assert "study tune_eps: 7 trials, 7 completed" in view["line"] and "table.md" not in view["texts"]
    assert view["study"].knobs.keys() == {"config/regularizer.antico_pair.eps", "config/regularizer.antico_pair.weight"}

    (study_dir / "trials.csv").unlink()
    from harness.search.__main__ import main

    assert main([str(study_dir)]) == 0 and len((study_dir / "trials.csv").read_text().splitlines()) == 8

    # another fixed semantic setting is another experiment: refused in one line naming it, nothing launched
    described = (study_dir / "search.yaml").read_text()
    proc = run_search(results, "hydra.sweeper.n_trials=8", "hydra.sweeper.sampler.seed=1", "trainer.epochs=3")
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip().splitlines()[-1]
    assert "holds trials of another setting (trainer.epochs: 2 -> 3)" in line and "study_name" in line
    assert len(load(results).get_trials()) == 7 and (study_dir / "search.yaml").read_text() == described


@pytest.mark.slow
def test_a_killed_worker_trial_is_failed_by_heartbeat_retried_and_resumed(results):
    cmd = [
        sys.executable,
        "run.py",
        "-m",
        "sweep=tune_eps",
        f"paths.results={results}",
        "hydra/launcher=submitit_local",
        *TINY,
        "trainer.epochs=6",
        "hydra.sweeper.n_trials=4",
    ]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # two reported epochs: epoch 1's checkpoint is on disk, so the retry resumes rather than restarts
        # at most 4 of 6: a kill that lands after the last epoch's checkpoint would leave the retry nothing to train
        victim = kill_a_worker_mid_trial(lambda: load(results), driver, reported=2, most=4)
        out, _ = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, out[-4000:]
    trials = load(results).get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len(tally(trials).done) == 4 and len(counted(trials)) == 4
    assert trials[victim.number].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("retry_history") == [victim.number])
    assert retry.state == TrialState.COMPLETE and retry.params == victim.params
    assert retry.user_attrs["run_dir"] == victim.user_attrs["run_dir"]  # the same run directory ...
    assert min(retry.intermediate_values) > 1  # ... resumed from its checkpoint, not started again
    assert records.read_record(retry.user_attrs["run_dir"])["status"] == "finished"


@pytest.mark.slow
def test_an_aggressive_pruner_prunes_and_the_records_say_so(results):
    check_ok(
        run_search(
            results,
            "trainer.epochs=3",
            "hydra.sweeper.n_trials=6",
            "hydra.sweeper.n_workers=1",
            "hydra.sweeper.sampler.seed=0",
            "hydra.sweeper.pruner.n_startup_trials=1",
            "hydra.sweeper.pruner.n_warmup_steps=0",
            "hydra.sweeper.storage=journal",
        )
    )
    assert (results / "search" / "tune_eps" / "study.journal").exists()
    trials = load(results).get_trials()
    assert len(trials) == 6 and all(t.state in FINISHED for t in trials)
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert pruned and len(pruned) < 6
    for t in pruned:
        record = records.read_record(t.user_attrs["run_dir"])
        assert record["status"] == "pruned" and record["pruned_epoch"] == max(t.intermediate_values) < 3
        assert "test/map@r" not in record
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert records.read_record(t.user_attrs["run_dir"])["status"] == "finished"


@pytest.mark.slow
def test_a_nan_trial_is_fail_with_its_reason_and_the_study_finishes(results, tmp_path, monkeypatch):
    # the storage URL comes from the environment (a database server on a cluster; a SQLite URL here)
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    monkeypatch.setenv("HARNESS_OPTUNA_STORAGE", url)
    # eps and weight fixed: the space is the learning rate only, and the brute-force sampler runs both values
    proc = run_search(
        results,
        "regularizer.antico_pair.eps=0.5",
        "regularizer.antico_pair.weight=0.1",
        "optimizer.lr=choice(0.001, 1e30)",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_workers=1",
        "~hydra.sweeper.sampler",
        "+hydra.sweeper.sampler={_target_: optuna.samplers.BruteForceSampler}",
        "hydra.sweeper.storage=env",
    )
    check_ok(proc)
    assert (tmp_path / "elsewhere.db").exists() and not (results / "search" / "tune_eps" / "study.db").exists()
    written = [p for p in results.rglob("*") if p.suffix in (".yaml", ".json", ".csv", ".txt", ".log")]
    assert written and not [p for p in written if "elsewhere.db" in p.read_text(errors="replace")]
    trials = {t.params["optimizer.lr"]: t for t in load(results).get_trials()}
    assert set(trials) == {0.001, 1e30}
    assert trials[0.001].state == TrialState.COMPLETE
    failed = trials[1e30]
    assert failed.state == TrialState.FAIL and failed.user_attrs["fail_reason"].startswith("NonFiniteLossError")
    record = records.read_record(failed.user_attrs["run_dir"])
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    assert "FAIL" in (results / "search" / "tune_eps" / "trials.csv").read_text()


@pytest.mark.slow
def test_a_wrong_search_key_is_one_line_and_launches_nothing(results):
    proc = run_search(results, "regularizer.antico_pair.epz=tag(log, interval(0.01, 1.0))")
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: regularizer.antico_pair.epz=")
    assert "did you mean regularizer.antico_pair.eps?" in line
    assert not (results / "search" / "tune_eps" / "study.db").exists()
    assert not (results / "runs").exists()


# ----------------------------------------------------------------------------------------------- SLURM
@pytest.mark.slow
@pytest.mark.slurm
def test_a_two_worker_study_completes_on_slurm(results, slurm):
    env = dict(os.environ, **slurm.env)
    proc = run_search(
        results,
        "hydra.sweeper.n_trials=4",
        "hydra.launcher.gpus_per_node=null",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=null",
        launcher="slurm",
        env=env,
    )
    check_ok(proc)
    trials = load(results).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # two SLURM jobs shared the study
    summaries = list((results / "search" / "tune_eps" / "jobs").glob("*/summary.json"))
    assert summaries and "slurm" in summaries[0].read_text()
