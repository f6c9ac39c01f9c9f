"""Dependencies that cannot break a lab's install: the harness subclasses hydra-submitit-launcher's internals and
imports private Optuna and Hydra names, so setup.cfg pins those packages to the tested range (lower and upper
bound). Here the suite fails loudly, naming the package, when an installed version is outside that range or a
private name the harness relies on has moved; never a user's sweep."""

import dataclasses
import inspect
from importlib.metadata import version

import pytest
from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version

# what the harness relies on privately, per distribution (each must be pinned above and below in setup.cfg)
PRIVATE = {
    "optuna": "optuna.storages._heartbeat.BaseHeartbeat (harness/search/study.py), FrozenTrial._trial_id",
    "hydra-core": "hydra.core.utils.run_job, JobReturn._return_value, HydraConfig.instance().cfg, BasicSweeper path",
    "hydra-submitit-launcher": "BaseSubmititLauncher and its queue config dataclasses (subclassed)",
    "submitit": "AutoExecutor.map_array, JobEnvironment, helpers.DelayedSubmission (checkpoint / requeue), "
    "core.subprocess (the launchers drop sacct's stderr while they wait)",
    # 0.x, and it removed its Python reader of the offline run file in a minor release (0.20)
    "wandb": "its private offline run-file format and wandb.proto.wandb_internal_pb2 (harness/tracking/wandb_file.py)",
    "pytest-xdist": "LoadScopeScheduling._split_scope, subclassed to keep the suite's groups on one worker "
    "(tests/xdist_groups.py)",
}


def requirements() -> dict:
    from setuptools.config.setupcfg import read_configuration

    options = read_configuration(str(REPO / "setup.cfg"))["options"]
    reqs = [*options["install_requires"], *options["extras_require"]["trackers"], *options["extras_require"]["test"]]
    return {Requirement(r).name.lower(): Requirement(r) for r in reqs}


@pytest.mark.parametrize("dist", sorted(PRIVATE))
def test_private_dependencies_are_pinned_and_installed_within_the_tested_range(dist):
    req = requirements()[dist]
    ops = {s.operator for s in req.specifier}
    assert ops & {"<", "<=", "~=", "=="} and ops & {">=", ">", "~=", "=="}, (
        f"setup.cfg must pin {dist} below and above (it relies on {PRIVATE[dist]}); it says {req}"
    )
    installed = Version(version(dist))
    assert req.specifier.contains(installed, prereleases=True), (
        f"{dist} {installed} is installed but the harness is tested with {req.specifier} (it relies on "
        f"{PRIVATE[dist]}): install a version in that range, or test the new one and move the pin"
    )


def test_optuna_private_heartbeat_api_is_where_the_harness_uses_it():
    import optuna
    from optuna.storages import _heartbeat

    from harness.search.study import JournalHeartbeatStorage

    assert _heartbeat.BaseHeartbeat.__abstractmethods__ == {
        "record_heartbeat",
        "_get_stale_trial_ids",
        "get_heartbeat_interval",
        "get_heartbeat_stale_trial_callback",
    }
    assert not JournalHeartbeatStorage.__abstractmethods__  # it implements every one
    assert "_get_stale_trial_ids" in inspect.getsource(_heartbeat.fail_stale_trials)
    assert optuna.storages.fail_stale_trials is _heartbeat.fail_stale_trials
    assert "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters
    trial = optuna.trial.create_trial(value=1.0, params={}, distributions={})
    assert hasattr(trial, "_trial_id")


def test_hydra_private_api_is_where_the_launchers_use_it():
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import JobReturn, run_job

    from harness.launch.sweep import GRID_SWEEPER

    params = inspect.signature(run_job).parameters
    assert {"hydra_context", "task_function", "config", "job_dir_key", "job_subdir_key"} <= set(params)
    assert "_return_value" in {f.name for f in dataclasses.fields(JobReturn)}
    assert hasattr(HydraConfig.instance(), "cfg") and callable(HydraConfig.instance().set_config)
    module, name = GRID_SWEEPER.rsplit(".", 1)
    assert inspect.isclass(getattr(__import__(module, fromlist=[name]), name))
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    assert callable(ConfigLoaderImpl.load_sweep_config)


def test_submitit_launcher_internals_are_what_the_harness_subclasses():
    import submitit

    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

    launcher = BaseSubmititLauncher(submitit_folder="x", timeout_min=1)
    assert launcher.params == {"submitit_folder": "x", "timeout_min": 1}
    launcher.setup(hydra_context="ctx", task_function="fn", config="cfg")
    assert (launcher.hydra_context, launcher.task_function, launcher.config) == ("ctx", "fn", "cfg")
    assert callable(BaseSubmititLauncher.checkpoint) and BaseSubmititLauncher._EXECUTOR == "abstract"
    slurm = {f.name for f in dataclasses.fields(SlurmQueueConf)}
    assert {
        "signal_delay_s",
        "max_num_timeout",
        "setup",
        "additional_parameters",
        "array_parallelism",
        "submitit_folder",
        "stderr_to_stdout",
        "gpus_per_node",
        "cpus_per_task",
        "mem_gb",
    } <= slurm
    assert {"submitit_folder", "timeout_min", "cpus_per_task", "stderr_to_stdout"} <= {
        f.name for f in dataclasses.fields(LocalQueueConf)
    }
    assert callable(submitit.AutoExecutor.map_array) and callable(submitit.helpers.DelayedSubmission)
    assert hasattr(submitit, "JobEnvironment")
    # the job side (hydra_plugins/harness_launchers/out_of_time.py): the signal submitit's handler is on, and the
    # error it raises when it will not requeue
    assert callable(submitit.JobEnvironment._usr_sig)
    from submitit.core.utils import UncompletedJobError

    assert "raise utils.UncompletedJobError(message)" in inspect.getsource(
        submitit.core.job_environment.SignalHandler.checkpoint_and_try_requeue
    )
    assert issubclass(UncompletedJobError, Exception)


def test_submitit_polls_sacct_through_its_core_module_s_subprocess():
    """The launchers quiet sacct's stderr by wrapping ``submitit.core.core.subprocess`` while they wait."""
    from submitit.core import core

    assert "subprocess.check_output(command, shell=False)" in inspect.getsource(core.InfoWatcher.update)


def test_xdist_schedules_by_the_scope_that_the_suite_s_scheduler_returns():
    """tests/xdist_groups.py: a scope is what ``_split_scope`` returns, for placing and for completing tests."""
    from xdist.scheduler import LoadScopeScheduling

    assert "self._split_scope(nodeid)" in inspect.getsource(LoadScopeScheduling.schedule)
    assert "self._split_scope(nodeid)" in inspect.getsource(LoadScopeScheduling.mark_test_complete)
