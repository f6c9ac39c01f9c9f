"""What the tables take from the rest of the harness: the run directory's file names, the config keys that are
no knob and the atomic write. The package imports them from here only, so that a move
inside the harness is a change of this one line."""

from harness.records import EPOCHS, NON_SEMANTIC_KEYS, RECORD, atomic_write_text

__all__ = ["EPOCHS", "NON_SEMANTIC_KEYS", "RECORD", "atomic_write_text"]
