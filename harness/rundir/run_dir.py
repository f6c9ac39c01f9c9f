"""``RunDir``: one run's directory, computed once, and the one reader of what it holds.

rd = RunDir.for_config(cfg)      the run a config names: its digest (config + data), keys and path
rd = RunDir.at(path)             an existing directory (tables, inspect, reload, search, trackers)
rd.record(), rd.epochs()         the validated record (None when absent or unusable) and the epoch log
rd.config()                      the saved config, as plain data checked by the guard (never instantiated here)
rd.finished(rerun)               the finished record when the run is to be skipped: the one skip decision
with rd.attempt(cfg, world) as attempt: ...   lock, open, close the record (harness.rundir.attempt)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from harness.distributed import World, broadcast_object
from harness.errors import ConfigError
from harness.io import atomic_write_json
from harness.rundir import identity, records
from harness.rundir.attempt import Attempt
from harness.rundir.guard import guarded_config
from harness.rundir.records import Corrupt


@dataclass(frozen=True)
class RunDir:
    path: Path
    keys: dict  # dataset, loss, regularizer, backbone, seed, config_hash (= digest[:8]), data_fingerprint
    digest: str | None = None  # the full digest; None for a directory of an earlier identity version
    semantic: dict | None = field(default=None, compare=False, repr=False)  # what the digest hashed

    # ------------------------------------------------------------------------------------------- finding it
    @classmethod
    def for_config(cls, cfg: DictConfig, world: World | None = None, trust_manifest: bool = False) -> RunDir:
        """The directory of the run ``cfg`` names. The data is fingerprinted by rank 0 and sent to the others.
        ``trust_manifest``: a planner's shortcut, a dataset's checksum manifest instead of hashing its files (a run
        never takes it: it hashes the bytes and checks the manifest against them)."""
        world = world or World()
        data = identity.data_fingerprint(cfg, trust_manifest) if world.is_main else None
        data = broadcast_object(data, world)
        full = identity.digest(cfg, data)
        keys = identity.keys_of(cfg, full, data)
        path = Path(str(cfg.paths.results)) / "runs" / keys["dataset"] / identity.dir_name(keys)
        return cls(path, keys, full, identity.semantic_config(cfg))

    @classmethod
    def at(cls, path) -> RunDir:
        """An existing run directory as its identity.json (version 2) or, before that, its name describes it."""
        path = Path(path)
        stored = read_identity(path)
        if stored.get("version") == identity.VERSION and isinstance(stored.get("keys"), dict):
            return cls(path, dict(stored["keys"]), stored.get("digest"), stored.get("semantic"))
        return cls(path, identity.parse_dir_name(path))

    @property
    def name(self) -> str:
        return self.path.name

    # ------------------------------------------------------------------------------------------- reading it
    def record(self) -> dict | None:
        return records.read_record(self.path)

    def epochs(self) -> list:
        """The epoch log ([] when none); :class:`~harness.rundir.records.Corrupt` when a line but the last is bad."""
        return records.read_epochs(self.path)

    def config(self) -> dict:
        """The saved config.yaml as plain data (resolved, redacted), checked by the one guard
        (harness.rundir.guard: nothing a planted file names is ever instantiated); ConfigError in one line."""
        return OmegaConf.to_container(guarded_config(self.path / "config.yaml"), resolve=False)

    def is_finished(self) -> bool:
        record = self.record()
        return bool(record) and record.get("status") == "finished"

    def finished(self, rerun: bool = False) -> dict | None:
        """The finished record when this run is to be skipped, else None (see :meth:`skips`)."""
        record = self.record()
        return record if self.skips(record, rerun) else None

    @staticmethod
    def skips(record: dict | None, rerun: bool) -> bool:
        """The one place that decides "finished, so skip" (for the planner, the process starter and the run
        itself): the record says finished and ``trainer.rerun`` is not set."""
        return bool(record) and record.get("status") == "finished" and not rerun

    # ------------------------------------------------------------------------------------------- its identity
    def check_identity(self) -> None:
        """Refuse a directory that holds another identity's run; write this run's identity.json when it has none."""
        stored = read_identity(self.path)
        if not stored:
            atomic_write_json(self.path / identity.FILE, self.identity_json())
            return
        if stored.get("digest") != self.digest:
            earlier = "" if stored.get("version") == identity.VERSION else ", of an earlier identity version"
            raise ConfigError(
                f"{self.path} holds another run ({differs(stored, self)}; identity "
                f"{str(stored.get('digest'))[:12]} != {str(self.digest)[:12]}{earlier}); it is left untouched: "
                f"remove it, or set paths.results elsewhere"
            )

    def check_no_earlier_version(self) -> None:
        """Refuse to start a run beside a directory of the same method and seed written by an earlier identity
        version: that run would be orphaned (trained again under its new name) instead of migrated."""
        for other in sorted(self.path.parent.glob(identity.same_prefix(self.keys))):
            if other != self.path and (other / identity.FILE).exists():
                version = read_identity(other).get("version")
                if version != identity.VERSION:
                    raise ConfigError(earlier_version_line(other))

    def identity_json(self) -> dict:
        return {
            "version": identity.VERSION,
            "digest": self.digest,
            "data": self.keys.get("data_fingerprint"),
            "keys": self.keys,
            "semantic": self.semantic,
        }

    def attempt(self, cfg: DictConfig, world: World | None = None) -> Attempt:
        """One attempt at this run: ``with rd.attempt(cfg, world) as attempt`` (harness.rundir.attempt)."""
        return Attempt(self, cfg, world or World())


def read_identity(path: Path) -> dict:
    """A directory's identity.json ({} when absent, empty or damaged: then it is rewritten by its run)."""
    try:
        stored = records.load_json(Path(path) / identity.FILE)
    except (FileNotFoundError, NotADirectoryError, Corrupt):
        return {}
    return stored if isinstance(stored, dict) else {}


def differs(stored: dict, mine: RunDir) -> str:
    """What differs between a stored identity and this run's, for the refusal's one line."""
    if stored.get("data") and stored.get("data") != mine.keys.get("data_fingerprint"):
        return "its data differ"
    theirs = stored.get("semantic")
    if isinstance(theirs, dict) and mine.semantic is not None:
        a, b = records.flatten(theirs), records.flatten(mine.semantic)
        keys = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if keys:
            shown = ", ".join(f"{k}: {json.dumps(a.get(k))} != {json.dumps(b.get(k))}" for k in keys[:3])
            return f"its config differs: {shown}{' ...' if len(keys) > 3 else ''}"
    return "its config or data differ"


def earlier_version_line(path: Path) -> str:
    results = path.parents[2] if len(path.parents) > 2 else path.parent
    return (
        f"{path} was written by an earlier run-identity version; run `python -m harness.rundir migrate {results}` "
        f"once (it renames such runs to identity version {identity.VERSION}), then run again"
    )
