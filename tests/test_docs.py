"""The documentation site: the configuration reference is generated from every YAML of conf/ (a new file appears
by itself), the harness's plain docstrings render as valid reStructuredText, the results pages equal what their
committed snapshots render, and every command of the getting-started page runs. (`make docs`, which `make test`
runs first, builds the whole site strictly.)"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import CONF, REPO

DOCS = REPO / "docs"


def load_extension(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ config reference
def test_the_config_reference_lists_every_yaml_of_conf_and_a_new_one_appears(tmp_path):
    reference = load_extension("config_reference")
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf, ignore=shutil.ignore_patterns("local"))  # conf/sweep -> sweeps/ is followed
    (conf / "local").mkdir()
    shutil.copy(CONF / "local" / "example.yaml", conf / "local")
    (conf / "local" / "cluster.yaml").write_text("db_password: hunter2\n")  # untracked settings: never rendered
    (conf / "loss" / "my_loss.yaml").write_text(
        "# My loss: a test's new option.\n"
        "_target_: harness.losses.MetricLoss\n"
        "name: my_loss\n"
        "weight: 0.5          # how much it counts\n"
        "loss:\n"
        "  num_classes: ???   # filled from the data\n"
        "  margin: ${..weight}\n"
    )
    warnings = []
    pages = reference.render(conf, repo=tmp_path, warn=warnings.append)
    text = "\n".join(pages.values())
    files = sorted(p for p in conf.rglob("*.yaml") if p.parent.name != "local") + [conf / "local" / "example.yaml"]
    files += sorted((conf / "sweep").rglob("*.yaml"))  # rglob does not follow the symlink to sweeps/
    for path in files:
        assert f"File `{path.relative_to(tmp_path)}`" in text, path
    assert "hunter2" not in text and "cluster.yaml" not in text and not warnings
    loss = pages["reference/config/loss.md"]
    assert "## `loss=my_loss`" in loss and "My loss: a test's new option." in loss
    assert "| `loss.weight` | `0.5` | how much it counts |" in loss
    assert "| `loss.loss.num_classes` | `???` | filled from the data |" in loss
    assert "| `loss.loss.margin` | `${..weight}` |  |" in loss
    assert "`harness.losses.MetricLoss`: " in loss  # its docstring's first paragraph follows
    experiment = pages["reference/config/experiment.md"]  # @package _global_: keys from the root
    assert "`@package _global_`" in experiment and "| `regularizer.nir.weight` | `0.00357` |" in experiment
    assert "| `hydra.launcher.timeout_min` | `240` | --time, minutes |" in pages["reference/config/hydra-launcher.md"]
    # a _target_ that does not import is a broken reference: the build's warning (an error under -W)
    (conf / "loss" / "my_loss.yaml").write_text("_target_: harness.losses.NoSuchLoss\n")
    reference.render(conf, repo=tmp_path, warn=warnings.append)
    assert len(warnings) == 1 and "harness.losses.NoSuchLoss does not import" in warnings[0]


def test_plain_docstrings_become_valid_restructuredtext():
    from docutils.core import publish_doctree

    plain = load_extension("plain_docstrings")
    doc = [
        "A formula after a paragraph:",
        "",
        "    L = 1/|P+| sum_{p in P+} log(1 + exp(-a))",
        "    + 1/|P| sum_p ...",
        "Two hooks:",
        "* ``a`` does one thing,",
        "  over two lines;",
        "* ``b`` another.",
        "The end, right after the list.",
        "A table:",
        "",
        "    x    one",
        "         two",
    ]
    settings = {"report_level": 5, "halt_level": 5, "warning_stream": False}
    tree = publish_doctree("\n".join(plain.plain_to_rst(doc)), settings_overrides=settings)
    messages = [m.astext() for m in tree.traverse() if m.tagname == "system_message"]
    assert not messages, messages
    assert len([n for n in tree.traverse() if n.tagname == "literal_block"]) == 2
    assert len([n for n in tree.traverse() if n.tagname == "list_item"]) == 2


# ------------------------------------------------------------------------------------------------ results pages
def test_the_layout_page_names_every_module_and_package_of_the_harness_root():
    """docs/reference/layout.md is the map of harness/: a new root module or package must appear on it, a removed one
    must leave it."""
    page = (REPO / "docs/reference/layout.md").read_text()
    named = set(re.findall(r"^ {6}(\w+(?:\.py|/))", page, flags=re.M)) | set(
        re.findall(r"^ {6}\S+ (\w+\.py)", page, flags=re.M)
    )
    root = REPO / "harness"
    present = {p.name + ("/" if p.is_dir() else "") for p in root.iterdir()
               if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").exists()}  # fmt: skip
    assert named == present, (
        f"missing from the page: {sorted(present - named)}; gone from the tree: {sorted(named - present)}"
    )


def test_the_results_pages_are_what_their_snapshots_render():
    from harness.docs_results import main

    assert main(["render", "--check"]) == 0, "run python -m harness.docs_results render and commit the pages"


# ------------------------------------------------------------------------------------------------ getting started
def page_commands(page: Path) -> list:
    """The commands of the page's ```shell blocks, comments dropped."""
    blocks = re.findall(r"```shell\n(.*?)```", page.read_text(), re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_every_command_of_the_getting_started_page_runs(digits_ablation, tmp_path):
    """Each command as the page types it, on a copy of the suite's `make run` grid (conftest's session fixture):
    the page's runs are runs of that grid, so they are found finished and skipped, as a user typing them after
    `make run` sees; `make run` is the two commands of its recipe (checked against the Makefile); what it prints is
    the table the page shows, rendered from the committed snapshot (so the snapshot is what the code computes)."""
    commands = page_commands(DOCS / "getting-started.md")
    assert commands[:2] == ["make run", "make test"] and len(commands) >= 7
    results = tmp_path / "results"
    shutil.copytree(digits_ablation, results, ignore=shutil.ignore_patterns("multirun", "tables", ".tables_index*"))
    env = dict(os.environ, HARNESS_RESULTS=str(results), OMP_NUM_THREADS="1")
    recipe = (REPO / "Makefile").read_text().split("\nrun:")[1].split("\n\n")[0]
    make_run = ["python run.py -m sweep=digits_ablation", "python -m harness.tables --sweep digits_ablation --seeds 3"]
    assert all(line.removeprefix("python ") in recipe for line in make_run)
    shown = re.search(r"<!-- results digits_ablation table.md --seeds 3 -->\n(.*?)<!-- /results -->",
                      (DOCS / "getting-started.md").read_text(), re.S).group(1)  # fmt: skip
    for command in commands:
        if command == "make test":
            continue  # the suite itself
        for line in make_run if command == "make run" else [command.replace("results/", f"{results}/")]:
            line = line.replace("python ", f"{sys.executable} ", 1)
            done = subprocess.run(["bash", "-c", line], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, f"{line}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
            if "run.py -m" in line:
                assert "skipped, nothing submitted for them" in done.stdout + done.stderr  # all found finished
            if "--sweep digits_ablation --seeds 3" in line:
                assert shown.strip() in done.stdout, "the page's table is not what make run prints: re-snapshot"
            if "--help" in line:
                assert "== Config groups (group=option) ==" in done.stdout
            if "harness.inspect" in line:
                assert len([p for p in done.stdout.splitlines() if p.endswith(".png")]) == 3  # grid, map, spectrum
