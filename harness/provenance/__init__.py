"""Where a run came from (environment) and what its numbers depend on besides config and data (numerics)."""

from harness.provenance.environment import (
    PACKAGES,
    device_name,
    git_state,
    imported_versions,
    module_version,
    package_versions,
    provenance,
    task_overrides,
)

__all__ = [
    "PACKAGES",
    "provenance",
    "task_overrides",
    "git_state",
    "imported_versions",
    "package_versions",
    "module_version",
    "device_name",
]
