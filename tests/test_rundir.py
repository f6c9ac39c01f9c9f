"""The run directory has one owner (harness/rundir): one digest, one reader, one skip decision, one migration."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from conftest import CONF, REPO, compose_cfg, exit_code, group_options, tiny

import harness
from harness.config import complete_config
from harness.errors import ConfigError
from harness.rundir import identity
from harness.rundir.__main__ import main as rundir_main
from harness.rundir.run_dir import RunDir

GROUPS = [p.name for p in sorted(CONF.iterdir()) if p.is_dir() and p.name not in ("hydra", "local", "sweep")]
CASES = [(g, o) for g in GROUPS for o in group_options(g)]


class Facts:
    """What complete_config reads from built data: the number of classes and the input shape."""

    def __init__(self, num_classes=7, input_shape=(3, 32, 32)):
        self.num_classes, self.input_shape = num_classes, input_shape


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_the_digest_before_build_is_the_digest_of_the_completed_config(group, option):
    """The directory is named before build; the record is written from the completed config. Both hash alike for
    every file of every group (the values the data decides are no part of the config's identity)."""
    cfg = compose_cfg([f"{group}={option}"])
    completed = complete_config(cfg, Facts())
    data = "fingerprint"
    assert identity.digest(cfg, data) == identity.digest(completed, data)
    assert identity.digest(cfg, data) != identity.digest(cfg, "another fingerprint")


def test_a_value_set_by_hand_where_the_data_decides_must_agree_with_it():
    cfg = compose_cfg(["loss=proxy_anchor", "loss.loss.num_classes=100"])
    with pytest.raises(ConfigError, match=r"loss.loss.num_classes=100 disagrees with the data and head \(7\)"):
        complete_config(cfg, Facts())
    complete_config(compose_cfg(["loss=proxy_anchor", "loss.loss.num_classes=7"]), Facts())  # agreeing is fine


def test_a_new_knob_at_its_default_leaves_every_identity_as_it_was(monkeypatch):
    from omegaconf import open_dict

    cfg = compose_cfg()
    before = identity.digest(cfg, "d")
    monkeypatch.setitem(identity.NEUTRAL_DEFAULTS, "trainer.new_knob", 0)
    with open_dict(cfg):
        cfg.trainer.new_knob = 0
    assert identity.digest(cfg, "d") == before
    cfg.trainer.new_knob = 1
    assert identity.digest(cfg, "d") != before


def test_record_identity_and_name_carry_one_digest(results):
    record = harness.run(tiny(["trainer.epochs=1"], results))
    run_dir = Path(record["run_dir"])
    stored = json.loads((run_dir / "identity.json").read_text())
    assert stored["version"] == identity.VERSION and stored["keys"]["config_hash"] == record["config_hash"]
    assert record["config_hash"] == stored["digest"][:8] == run_dir.name.split("__")[3]
    assert RunDir.at(run_dir) == RunDir.for_config(tiny(["trainer.epochs=1"], results))
    assert RunDir.at(run_dir).finished() == record and RunDir.at(run_dir).finished(rerun=True) is None


def test_an_earlier_version_is_refused_in_one_line_then_migrated_and_skipped(results, capsys):
    """A directory of identity version 1 (its name, identity.json and record.json as version 1 wrote them): a run
    beside it is refused before anything is written; ``python -m harness.rundir migrate`` renames it; the same
    command then skips it as finished."""
    cfg = tiny(["trainer.epochs=1"], results)
    record = harness.run(cfg)
    new = Path(record["run_dir"])
    old = new.with_name(new.name.replace(record["config_hash"], "c400911a"))
    new.rename(old)
    (old / "identity.json").write_text(json.dumps({"digest": "c400911a" + "0" * 32, "data": "abc"}))
    (old / "record.json").write_text(json.dumps({**record, "config_hash": "d2edb8c8", "run_dir": str(old)}))
    with pytest.raises(ConfigError, match=r"earlier run-identity version; run `python -m harness.rundir migrate"):
        harness.run(cfg)
    assert sorted(p.name for p in old.parent.iterdir()) == [old.name]  # the refused run left no directory

    assert exit_code(rundir_main, ["migrate", str(results)]) == 0
    assert "1 run directories migrated to identity version 2" in capsys.readouterr().out
    assert sorted(p.name for p in old.parent.iterdir()) == [new.name]
    moved = json.loads((new / "record.json").read_text())
    assert moved["config_hash"] == record["config_hash"] and moved["run_dir"] == str(new)
    stamp = (new / "record.json").stat().st_mtime_ns
    assert harness.run(cfg)["test/map@r"] == record["test/map@r"]  # skipped: nothing trained again
    assert (new / "record.json").stat().st_mtime_ns == stamp
    assert exit_code(rundir_main, ["migrate", str(results)]) == 0  # again: nothing to do
    assert "0 run directories migrated" in capsys.readouterr().out


def test_a_directory_holding_another_run_says_what_differs(results):
    cfg = tiny(["trainer.epochs=1"], results)
    rd = RunDir.for_config(cfg)
    rd.path.mkdir(parents=True)
    semantic = json.loads(json.dumps(rd.semantic))
    semantic["optimizer"]["lr"] = 0.5
    other = RunDir(rd.path, rd.keys, "f" * 40, semantic)
    (rd.path / "identity.json").write_text(json.dumps(other.identity_json()))
    differs = r"holds another run \(its config differs: optimizer.lr: 0.5 != 0.001; identity ffffffffffff"
    with pytest.raises(ConfigError, match=differs):
        harness.run(cfg)


def test_an_empty_identity_file_is_rewritten_by_its_own_run(results):
    record = harness.run(tiny(["trainer.epochs=1"], results))
    (Path(record["run_dir"]) / "identity.json").write_text("")
    assert harness.run(tiny(["trainer.epochs=1"], results))["status"] == "finished"  # skipped, not refused
    assert json.loads((Path(record["run_dir"]) / "identity.json").read_text())["version"] == identity.VERSION


# ----------------------------------------------------------------------------------------------- one owner
def harness_sources():
    return [p for p in (REPO / "harness").rglob("*.py") if "rundir" not in p.parts] + list(
        (REPO / "hydra_plugins").rglob("*.py")
    )


@pytest.mark.parametrize(
    "pattern,what",
    [
        (r"""split\(["']__["']\)""", "a parser of run-directory names"),
        (r"""["']status["']\)\s*==\s*["']finished["'].*not\s+\w*rerun""", "a skip decision"),
        (r"def check_record|def parse_record|def read_epochs|json\.loads\(line\)", "a record or epoch-log reader"),
        (r"""["']__seed|__seed\{""", "a writer of run-directory names"),
    ],
)
def test_nothing_outside_harness_rundir_reads_or_names_a_run_directory(pattern, what):
    found = [f"{p.relative_to(REPO)}:{n}" for p in harness_sources()
             for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(pattern, line)]  # fmt: skip
    assert not found, f"{what} outside harness/rundir: {found}"


def test_the_package_has_no_import_circle():
    """Module-level imports of harness modules form no cycle (lazy imports inside functions are not counted)."""
    graph = {}
    for path in (REPO / "harness").rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
                deps.add(node.module)
                deps.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("harness"))
        graph[name] = deps
    graph = {k: {d for d in v if d in graph and d != k} for k, v in graph.items()}

    def cycle_from(start, node, seen):
        for nxt in graph[node]:
            if nxt == start:
                return [node, nxt]
            if nxt not in seen:
                seen.add(nxt)
                path = cycle_from(start, nxt, seen)
                if path:
                    return [node, *path]
        return None

    cycles = [c for m in sorted(graph) if (c := cycle_from(m, m, {m})) and not m.endswith("__init__")]
    assert not cycles, cycles[0]


def test_every_import_inside_a_function_says_why():
    """Imports go at the top of the module; one inside a function (an optional or heavy dependency, a circle, a light
    entry point) carries a comment on its line, or on the line just above it or above its group of imports."""
    silent = set()
    for path in sorted((REPO / "harness").rglob("*.py")):
        lines = path.read_text().splitlines()
        for func in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for block in ast.walk(func):
                for field in ("body", "orelse", "finalbody"):
                    stmts = getattr(block, field, None)
                    if not isinstance(stmts, list):
                        continue
                    head = None  # the first import of the run of imports this one belongs to
                    for stmt in stmts:
                        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
                            head = None
                            continue
                        head = head or stmt
                        own = any("#" in line for line in lines[stmt.lineno - 1 : stmt.end_lineno])
                        above = lines[head.lineno - 2].strip().startswith("#")
                        if not (own or above):
                            silent.add(f"{path.relative_to(REPO)}:{stmt.lineno}: {lines[stmt.lineno - 1].strip()}")
    assert not silent, "move these imports to the top, or say why they are lazy:\n" + "\n".join(sorted(silent))
