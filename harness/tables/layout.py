"""What the tables take from the rest of the harness: the run directory's file names, the config keys that are
no knob (and the new knobs' neutral defaults), and the atomic writes. The package imports them from here only,
so that a move inside the harness is a change of these lines."""

from harness.io import atomic_write, atomic_write_text
from harness.rundir.identity import NEUTRAL_DEFAULTS, NON_SEMANTIC_KEYS
from harness.rundir.records import EPOCHS, RECORD

__all__ = ["EPOCHS", "NEUTRAL_DEFAULTS", "NON_SEMANTIC_KEYS", "RECORD", "atomic_write", "atomic_write_text"]
