"""Rename the run directories of an earlier identity version: ``python -m harness.rundir migrate RESULTS``.

A change of what enters a run's identity (harness.rundir.identity.VERSION) gives every run a new digest, so a
finished run would otherwise be trained again under its new name. This command computes each directory's
digest again from its saved config and its data (as it is now: the data must be where the config says), and

* renames the directory to its new name (in the same folder),
* writes its identity.json at the current version,
* re-keys its record.json (``config_hash``, ``name``, ``run_dir``, ``data_fingerprint``), atomically,

holding the directory's lock (a directory a process is writing is left for later). A directory whose new name is
taken, whose config cannot be read, or whose data is absent is left as it is and listed with the reason. Nothing
read from the directory is executed: the only thing built is an in-memory dataset (scikit-learn's digits) named by
a file under conf/dataset/, to fingerprint its arrays.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import ConfigError, HarnessError
from harness.io import atomic_write_json
from harness.rundir import identity, records
from harness.rundir.lock import RunLocked, run_lock
from harness.rundir.run_dir import RunDir, read_identity

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class Migration:
    renamed: list = field(default_factory=list)  # (old path, new path)
    current: int = 0  # already at this version
    left: list = field(default_factory=list)  # (path, why)

    def summary(self) -> str:
        return (
            f"{len(self.renamed)} run directories migrated to identity version {identity.VERSION}, "
            f"{self.current} already current, {len(self.left)} left as they are"
        )


def run_dirs(results: Path) -> list:
    """Every run directory under ``results/runs`` (one holding an identity.json, a record or a config)."""
    found = []
    for dataset in sorted((Path(results) / "runs").glob("*")):
        for d in sorted(dataset.glob("*")):
            if d.is_dir() and any((d / f).exists() for f in (identity.FILE, records.RECORD, "config.yaml")):
                found.append(d)
    return found


def migrate(results, dry_run: bool = False) -> Migration:
    out = Migration()
    for path in run_dirs(Path(results)):
        if read_identity(path).get("version") == identity.VERSION:
            out.current += 1
            continue
        try:
            new = migrate_one(path, dry_run)
        except (HarnessError, OSError) as err:
            out.left.append((path, " ".join(str(err).split())))
            continue
        out.renamed.append((path, new))
    return out


def migrate_one(path: Path, dry_run: bool) -> Path:
    """Move one directory to its current identity; return its new path (ConfigError: left as it is, why)."""
    config = RunDir.at(path).config()
    check_dataset(config)
    identity.forget_data()
    data = identity.data_fingerprint(config)
    digest = identity.digest(config, data)
    keys = identity.keys_of(config, digest, data)
    new = path.parent / identity.dir_name(keys)
    if new != path and new.exists():
        raise ConfigError(f"its new name {new.name} is taken by another directory; compare the two and remove one")
    if dry_run:
        return new
    try:
        with run_lock(path, timeout=0):
            if new != path:
                os.rename(path, new)
            rd = RunDir(new, keys, digest, identity.semantic_config(config))
            atomic_write_json(new / identity.FILE, rd.identity_json())
            record = records.read_record(new)
            if record is not None:
                record.update(keys, name=new.name, run_dir=str(new))
                atomic_write_json(new / records.RECORD, record)
    except RunLocked as err:
        raise ConfigError(f"{err}; migrate it when it is done") from None
    return new


def check_dataset(config: dict) -> None:
    """Only datasets that conf/dataset/ names are fingerprinted (an in-memory one is built to hash its arrays)."""
    target = (config.get("dataset") or {}).get("_target_")
    known = {line.split(":", 1)[1].strip() for f in CONF.glob("dataset/*.yaml") for line in f.read_text().splitlines()
             if line.startswith("_target_:")}  # fmt: skip
    if target not in known:
        raise ConfigError(f"its dataset._target_={target!r} is not one of conf/dataset/'s; it is not built")
