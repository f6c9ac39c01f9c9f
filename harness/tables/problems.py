"""What enters no mean, and where to look: failed, pruned and running runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from harness.tables.render import markdown_grid


def problems_markdown(runs: pd.DataFrame) -> str | None:
    """Failed, pruned and running runs, each with where to look."""
    bad = runs[runs["status"] != "finished"]
    if bad.empty:
        return None
    body = []
    for _, r in bad.sort_values(["status", "path"]).iterrows():
        if r["status"] == "failed":
            detail, where = str(r.get("error") or "")[:120], r.get("error_file") or r["path"]
        elif r["status"] == "pruned":
            detail, where = f"pruned at epoch {int(r['pruned_epoch'])}" if pd.notna(r.get("pruned_epoch")) else "pruned", r["path"]
        else:
            epoch = r.get("last_epoch")
            ago = r.get("updated_s_ago")
            detail = (f"no record.json (running, or killed): last epoch {int(epoch) if pd.notna(epoch) else '-'}, "
                      f"epoch log updated {ago:.0f}s ago" if pd.notna(ago) else "no record.json (running, or killed)")
            where = r["path"]
        body.append([r["status"], str(r.get("name", Path(r["path"]).name)), detail.replace("|", "/"), str(where)])
    return "*runs that enter no mean*\n\n" + markdown_grid(["status", "run", "detail", "path"], body, left=4) + "\n"
