"""One way to fail: every entry point answers bad input with one redacted line on stderr and exit code 2
(harness.cli), never a traceback; a secret in the bad input never reaches the console."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, exit_code

SECRET = "hunter2"
URL = f"postgresql://u:{SECRET}@db.example.org/x"


def module(name):
    """An entry point called in this process: ``main(argv)`` of ``python -m <name>``."""
    import importlib

    main = importlib.import_module(f"{name}.__main__" if name != "harness.evaluate" else name).main
    return lambda argv: exit_code(main, argv)


def command(*args, env=None):
    """An entry point as a user types it (run.py, the launchers, the sweeper: Hydra is between them and us)."""

    def call(_argv):
        proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
        sys.stderr.write(proc.stderr)
        sys.stdout.write(proc.stdout)
        return proc.returncode

    return call


def cases(tmp):
    named = tmp / f"password={SECRET}"  # a path that holds a secret's shape (key=value): redacted too
    missing = tmp / f"token={SECRET}.npy"
    return {
        "run.py": (command("run.py", f"paths.results={tmp}", "trainer.epochs=abc", f"+db={URL}"), []),
        "launcher": (
            command("run.py", "-m", f"paths.results={tmp}", "hydra/launcher=submitit_local", f"+db.password={SECRET}"),
            [],
        ),
        "sweeper": (
            command(
                "run.py",
                "-m",
                "sweep=tune_eps",
                f"paths.results={tmp}",
                "hydra.sweeper.n_trials=1",
                "regularizer.antico_pair.epz=tag(log, interval(0.01, 1.0))",
                f"+db={URL}",
            ),  # fmt: skip
            [],
        ),
        "harness.tables": (module("harness.tables"), [str(tmp), "--seeds", "abc", URL]),
        "harness.search": (module("harness.search"), [str(named)]),
        "harness.inspect": (module("harness.inspect"), [str(named)]),
        "harness.evaluate": (module("harness.evaluate"), [str(missing), str(missing)]),
        "harness.rundir": (module("harness.rundir"), ["migrate"]),
        "harness.bench": (module("harness.bench"), ["--only", f"nonsense{URL}"]),
    }


NAMES = ["run.py", "launcher", "sweeper", "harness.tables", "harness.search", "harness.inspect", "harness.evaluate",
         "harness.rundir", "harness.bench"]  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_is_one_redacted_line_and_exit_2(name, tmp_path, capsys):
    call, argv = cases(tmp_path)[name]
    code = call(argv)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2, out.err[-2000:]
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in out.err + out.out, out.err[-2000:]
    assert len([line for line in lines if line.startswith("error: ")]) == 1
    assert SECRET not in out.err + out.out


def test_the_entry_point_list_is_every_command():
    """Every ``python -m harness.<x>`` entry point of the package is in the list above."""
    mains = sorted(p.parent.name for p in (REPO / "harness").glob("*/__main__.py"))
    assert {f"harness.{m}" for m in mains} | {"harness.evaluate"} <= set(NAMES)
