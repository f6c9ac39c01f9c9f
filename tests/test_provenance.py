"""Versions as the process imported them (harness/provenance/environment.py), not the metadata at record time."""

import torch

from harness.provenance import imported_versions


def test_versions_come_from_the_imported_modules(monkeypatch):
    """A module object keeps the version it was loaded with; the record must say that one, even when the installed
    package changed under the running process (simulated: the loaded module reports another version)."""
    assert imported_versions()["torch"] == torch.__version__  # raw, local build label kept (e.g. +cu130)
    monkeypatch.setattr(torch, "__version__", "9.9.9+loaded")
    versions = imported_versions()
    assert versions["torch"] == "9.9.9+loaded"
    assert versions["FrEIA"]  # no __version__ in the module: the installed distribution's
