"""The protocols in the tables: which protocol each run followed, never pooled, and the Reality Check's folds read
back as one model (docs/concepts/protocols.md).

    protocol     a column: clean (the default; the epoch chosen on the class-disjoint validation split),
                 ``authors ‡`` (protocol=authors: every training class trained on, the epoch chosen on the test
                 split, optimistic), ``reality_check (separated)`` / ``reality_check (concatenated)``. It is a row
                 key of every view as soon as the runs hold more than one protocol, so no mean pools two of them
                 and no Δ pairs across them; a table of one non-clean protocol says it in its caption.
    regularizer  a paper's released baseline command (arm=released_baseline) is its own row, ``none (released
                 baseline)``: never the ``none`` of the paired Δ, which is the baseline matched to the method's run.
    folds        the k fold runs of one Reality Check configuration and seed become two rows: ``separated``, the
                 mean of the k fold models' metrics; ``concatenated``, the test split scored once more on the fold
                 models' test embeddings, each L2-normalised, concatenated (k x d). A configuration whose folds are
                 not all finished gives no row for that seed (listed in problems.md, the folds' runs stay listed).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from harness.evaluation import evaluate_embeddings
from harness.evaluation.diagnostics import normalize_rows
from harness.protocols.embeddings import RECORD_KEY, load_test_embeddings
from harness.tables.problems import Problem

log = logging.getLogger(__name__)

CLEAN, AUTHORS = "clean", "authors ‡"
SEPARATED, CONCATENATED = "reality_check (separated)", "reality_check (concatenated)"
RELEASED = "none (released baseline)"
OPTIMISTIC_NOTE = (
    "‡ authors' protocol (protocol=authors): trained on every training class, the epoch chosen on the test split "
    "(as the papers report): optimistic, never pooled with validation-selected rows"
)
FOLD_KEYS = ("config/protocol.fold", "config/dataset.val_classes")  # what differs between the folds of one model


def label_protocols(runs: pd.DataFrame) -> pd.DataFrame:
    """The ``protocol`` column, and the released baselines' own ``regularizer`` label."""
    runs = runs.copy()
    names = runs["config/protocol.name"] if "config/protocol.name" in runs else pd.Series(None, index=runs.index)
    runs["protocol"] = names.where(names.notna(), CLEAN).map(lambda p: AUTHORS if p == "authors" else str(p))
    if "config/published.arm" in runs:
        released = (runs["config/published.arm"] == "released_baseline") & runs["regularizer"].isin(["none", None])
        runs.loc[released, "regularizer"] = RELEASED
    return runs


def read_protocols(runs: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """Label every run's protocol and read the Reality Check folds back as models; the problems found."""
    if runs.empty or "regularizer" not in runs:
        return runs, []
    runs = label_protocols(runs)
    folds = runs["protocol"] == "reality_check"
    if not folds.any():
        return runs, []
    problems, models = [], []
    fold_runs = runs[folds]
    finished = fold_runs[fold_runs["status"] == "finished"]
    for _, group in finished.groupby(model_key(finished), sort=False):
        models += read_model(group, problems)
    others = fold_runs[fold_runs["status"] != "finished"].copy()
    others["protocol"] = SEPARATED  # a failed / pruned / running fold is listed with its model's rows
    frame = pd.concat([runs[~folds], others, pd.DataFrame(models)], ignore_index=True)
    return frame, problems


def model_key(folds: pd.DataFrame) -> pd.Series:
    """One key per (configuration, seed) across its folds: every config value but the fold's own."""
    cols = sorted(c for c in folds.columns if c.startswith("config/") and c not in FOLD_KEYS)
    cols += [c for c in ("dataset", "loss", "regularizer", "backbone", "seed") if c in folds]
    return folds[cols].apply(lambda row: json.dumps([str(v) for v in row.tolist()]), axis=1)


def read_model(group: pd.DataFrame, problems: list) -> list:
    """The separated and concatenated rows of one configuration and seed (none when a fold is missing)."""
    first = group.sort_values("config/protocol.fold").iloc[0]
    k = int(first["config/protocol.folds"])
    have = sorted(int(f) for f in group["config/protocol.fold"].unique())
    if have != list(range(k)):
        missing = sorted(set(range(k)) - set(have))
        problems.append(
            Problem(
                str(Path(first["path"])),
                f"Reality Check: fold(s) {missing} of {k} not finished (seed {int(first['seed'])})",
                "no separated / concatenated row for this seed until every fold is finished",
            )
        )
        return []
    group = group.drop_duplicates("config/protocol.fold").sort_values("config/protocol.fold")
    base = {c: first[c] for c in group.columns}
    base.update({"config/protocol.fold": np.nan, "config/dataset.val_classes": f"every fold of {k}"})
    base["config_hash"] = hashlib.sha1(json.dumps(sorted(str(h) for h in group["config_hash"])).encode()).hexdigest()[
        :8
    ]
    metrics = [c for c in group.columns if c.startswith(("test/", "val/", "diag/")) and is_numeric(group[c])]
    separated = {**base, **group[metrics].mean(numeric_only=True).to_dict(), "protocol": SEPARATED}
    for timing in ("train_time_s", "wall_time_s", "train_cpu_s"):  # one model costs its k fold runs
        if timing in group and is_numeric(group[timing]):
            separated[timing] = float(group[timing].sum())
    concatenated = concatenated_row(group, base, problems)
    return [separated] + ([concatenated] if concatenated is not None else [])


def is_numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def concatenated_row(group: pd.DataFrame, base: dict, problems: list) -> dict | None:
    """The test split scored on the fold models' L2-normalised test embeddings, concatenated."""
    parts = []
    for _, run in group.iterrows():
        name = run.get(RECORD_KEY)
        path = Path(run["path"]) / (name if isinstance(name, str) else "test_embeddings.npz")
        try:
            parts.append(load_test_embeddings(path))
        except (FileNotFoundError, ValueError) as err:
            problems.append(Problem(str(path), str(err), "no concatenated row for this model (separated kept)"))
            return None
    first = parts[0]
    same = all(
        np.array_equal(p.query_labels, first.query_labels)
        and (p.gallery is None) == (first.gallery is None)
        and (p.gallery is None or np.array_equal(p.gallery_labels, first.gallery_labels))
        for p in parts
    )
    if not same:
        problems.append(
            Problem(str(group.iloc[0]["path"]), "the folds' test splits differ", "no concatenated row for this model")
        )
        return None
    query = np.hstack([normalize_rows(p.query, np.float32) for p in parts])
    gallery = np.hstack([normalize_rows(p.gallery, np.float32) for p in parts]) if first.gallery is not None else None
    k_list = json.loads(base["config/eval.k"]) if isinstance(base.get("config/eval.k"), str) else [1, 2, 4, 8]
    scores = evaluate_embeddings(
        query,
        first.query_labels,
        gallery,
        first.gallery_labels,
        k_list=k_list,
        metric=str(base.get("config/eval.metric", "ip")),
        with_nmi=bool(base.get("config/eval.nmi", True)),
        seed=int(base["seed"]),
    )
    row = {k: v for k, v in base.items() if not str(k).startswith(("test/", "diag/test/", "test_best/"))}
    row.update({f"test/{k}": v for k, v in scores.items()})
    row.update({"protocol": CONCATENATED, "test/embed_dim": int(query.shape[1])})
    for timing in ("train_time_s", "wall_time_s", "train_cpu_s"):
        if timing in group and is_numeric(group[timing]):
            row[timing] = float(group[timing].sum())
    return row


def protocol_rows(runs: pd.DataFrame, rows: list) -> list:
    """``rows`` plus ``protocol`` when the runs hold more than one protocol (never pooled, never paired across)."""
    if "protocol" in runs and "protocol" not in rows and runs["protocol"].nunique() > 1:
        return rows + ["protocol"]
    return rows


def protocol_scope(runs: pd.DataFrame, keys: list) -> list:
    """Caption words for a table of one protocol that is not the clean one."""
    if "protocol" not in runs or "protocol" in keys or runs["protocol"].nunique() != 1:
        return []
    name = runs["protocol"].iloc[0]
    return [] if name == CLEAN else [f"protocol {name}"]


def protocol_notes(runs: pd.DataFrame) -> list:
    return [OPTIMISTIC_NOTE] if "protocol" in runs and (runs["protocol"] == AUTHORS).any() else []


def without_released(table, rows: list):
    """The Δ view without the released baselines' rows: they are their own rows, never paired with the method."""
    if table is None or "regularizer" not in rows:
        return table
    level = rows.index("regularizer")
    keep = np.array([t[level] != RELEASED for t in table.mean.index])
    if keep.all():
        return table
    if not keep.any():
        return None
    for attr in ("mean", "std", "bold", "flagged"):
        setattr(table, attr, getattr(table, attr)[keep])
    return table
