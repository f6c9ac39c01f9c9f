"""What the tables take from the rest of the harness: the run directory's file names, the config keys that are
no knob (and the new knobs' neutral defaults), and the atomic writes. The package imports them from here only,
so that a move inside the harness is a change of these lines."""

from harness.io import atomic_write, atomic_write_text
from harness.rundir import identity
from harness.rundir.identity import NON_SEMANTIC_KEYS
from harness.rundir.records import EPOCHS, RECORD

# {dotted key: default}: a knob newer than a record is, in that record, at its default (issue 22's identity)
NEUTRAL_DEFAULTS = dict(getattr(identity, "NEUTRAL_DEFAULTS", {}))

__all__ = ["EPOCHS", "NEUTRAL_DEFAULTS", "NON_SEMANTIC_KEYS", "RECORD", "atomic_write", "atomic_write_text"]
