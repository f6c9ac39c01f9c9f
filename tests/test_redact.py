"""No secret on disk: the one redaction module (harness/redact.py) and the writers that go through it."""

import json
import logging
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.redact import MASK, holds_secret, redact, redact_text
from harness.rundir import records

SECRETS = ["hunter2", "p@ss@w0rd", "s3cr3t", "tok-123", "AIzaKEY", "a/b@c"]


@pytest.mark.parametrize(
    "text,kept",
    [
        ("postgresql://user:hunter2@db.lab:5432/optuna", "postgresql://user:***@db.lab:5432/optuna"),
        ("postgresql://:hunter2@db.lab/optuna", "postgresql://:***@db.lab/optuna"),  # no user name
        ("postgresql://u:p@ss@w0rd@db.lab/optuna?sslmode=require", "postgresql://u:***@db.lab/optuna?sslmode=require"),
        ("mysql://u:a/b@c@host/db", "mysql://u:***@host/db"),  # '/' and '@' in it
        ("mysql://u:a@b/c@host/db x", "mysql://u:***@host/db x"),  # '@' before '/' too
        ("https://h/x?password=hunter2&n=1", "https://h/x?password=***&n=1"),
        ("https://h/x?n=1&token=tok-123#top", "https://h/x?n=1&token=***#top"),
        ("https://h/x?key=AIzaKEY&sig=s3cr3t", "https://h/x?key=***&sig=***"),
        ("+db.password=hunter2 trainer.epochs=3", "+db.password=*** trainer.epochs=3"),
        ("tracker.api_key=tok-123", "tracker.api_key=***"),
        ("client_secret: s3cr3t", "client_secret: ***"),
        ('{"db_password": "hunter2", "n": 1}', '{"db_password": "***", "n": 1}'),
        ("password='p w' x=1", "password='***' x=1"),
        # a libpq DSN typed as one quoted override: the pairs inside the quotes too
        ('+dsn="host=h user=u password=hunter2" seed=1', '+dsn="host=h user=u password=***" seed=1'),
        ("+db.dsn='host=h password=\"p w\" port=5' x=1", "+db.dsn='host=h password=\"***\" port=5' x=1"),
        ('{"conn": "dbname=x pw=s3cr3t"}', '{"conn": "dbname=x pw=***"}'),
        # secret names by shape: short forms, plurals, camelCase, a glued prefix
        ("+db.pass=hunter2", "+db.pass=***"),
        ("pw: hunter2", "pw: ***"),
        ("vault.secrets=s3cr3t", "vault.secrets=***"),
        ("client.secretKey=s3cr3t", "client.secretKey=***"),
        ("aws_key=AIzaKEY", "aws_key=***"),
        ("PGPASSWORD=hunter2", "PGPASSWORD=***"),
        ("dbPassword: hunter2", "dbPassword: ***"),
        # a token as a git remote's user (W&B and MLflow record the remote)
        ("https://ghp_tok123abc@github.com/o/r.git", "https://***@github.com/o/r.git"),
        ("https://x-access-token:tok-123@github.com/o/r", "https://x-access-token:***@github.com/o/r"),
        ("origin https://AbCdEf0123456789xYz01@gitlab.lab/o/r.git", "origin https://***@gitlab.lab/o/r.git"),
    ],
)
def test_text_redaction_catches_every_form(text, kept):
    assert redact_text(text) == kept
    assert redact_text(kept) == kept  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "http://host:8080/path",
        "results/runs/digits/ms__none__mlp__1a2b3c4d__seed0",
        "test/map@r=0.5123",
        "signal_delay_s: 120",
        "cls_token: true",
        "storage: ${oc.env:HARNESS_OPTUNA_STORAGE}",
        "num_tokens=8",
        "error: trainer.epochs=abc must be an integer",
        "sort_key=name",
        "ssh://git@github.com/o/r.git",  # a user name, not a token
        "postgresql://postgres@db.lab/x",
        "bypass=1 passes=3 compass: north",
        '+note="lr=0.1 epochs=3"',
    ],
)
def test_text_without_secrets_is_unchanged(text):
    assert redact_text(text) == text


# ----------------------------------------------------------------------------------------------- by shape (properties)
_SECRET_CHARS = string.ascii_letters + string.digits + "-_.~!$*+^%"
SECRET = st.text(_SECRET_CHARS, min_size=6, max_size=24).filter(
    lambda s: s.lower() not in ("null", "none", "true", "false") and not s.startswith(MASK)
)
# anything a value may hold in text that is not a URL: separators, @, / and a comma too
SECRET_IN_TEXT = st.text(_SECRET_CHARS + ",@/:;", min_size=6, max_size=24).filter(
    lambda s: s[0] not in ",:" and s.lower() not in ("null", "none", "true", "false") and MASK not in s
)
WORD = st.sampled_from(
    ["password", "passwd", "pass", "pw", "pwd", "secret", "secrets", "token", "api_key", "apikey", "access_key",
     "private_key", "aws_key", "aws_secret_access_key", "credentials", "auth", "PGPASSWORD", "secretKey"]
)  # fmt: skip
SECRET_KEY = st.builds(
    lambda pre, word, post: f"{pre}{word}{post}",
    st.sampled_from(["", "db.", "db_", "my-", "client.", "+", "+db.", "vault.x."]),
    WORD,
    st.sampled_from(["", "_file_contents", ".value", "-2"]),
)
TEXT_FORMS = [
    "{key}={value}",
    "{key}: {value}",
    '"{key}": "{value}"',
    "{key}='{value}'",
    "trainer.epochs=3 {key}={value} seed=1",
    '+dsn="host=h user=u {key}={value} port=5432"',
    "{{'conn': 'dbname=x {key}={value}'}}",
    "export {key}={value}",
]
URL_FORMS = [
    "postgresql://user:{value}@db.lab:5432/optuna",
    "redis://:{value}@cache.lab/0",
    "https://h/x?n=1&{param}={value}#top",
    "https://{token}@github.com/org/repo.git",
    "https://x-access-token:{value}@github.com/org/repo.git",
]
PLAIN_KEYS = ["seed", "trainer.epochs", "optimizer.lr", "dataset.root", "num_tokens", "sort_key", "signal_delay_s"]


@settings(max_examples=200, deadline=None)
@given(form=st.sampled_from(TEXT_FORMS), key=SECRET_KEY, value=SECRET_IN_TEXT)
def test_a_secret_keyed_value_never_survives_in_any_text_form(form, key, value):
    text = form.format(key=key, value=value)
    clean = redact_text(text)
    assert value not in clean and MASK in clean
    assert redact_text(clean) == clean  # idempotent
    assert holds_secret(text) and not holds_secret(clean)


@settings(max_examples=150, deadline=None)
@given(
    form=st.sampled_from(URL_FORMS),
    value=SECRET,
    param=st.sampled_from(["password", "pw", "token", "key", "sig", "api_key", "secretKey"]),
    token=st.builds(lambda p, t: p + t, st.sampled_from(["ghp_", "glpat-", "github_pat_", "hf_"]), SECRET),
)
def test_a_url_secret_never_survives(form, value, param, token):
    text = form.format(value=value, param=param, token=token)
    clean = redact_text(text)
    assert value not in clean and token not in clean and MASK in clean
    assert redact_text(clean) == clean


@settings(max_examples=100, deadline=None)
@given(
    key=st.sampled_from(PLAIN_KEYS),
    value=st.one_of(
        st.integers().map(str),
        st.floats(allow_nan=False).map(repr),
        st.text(string.ascii_lowercase + string.digits + "_/.", min_size=1, max_size=20),
    ),
    form=st.sampled_from(["{key}={value}", "{key}: {value}", '"{key}": "{value}"']),
)
def test_text_without_a_secret_is_left_as_it_is(key, value, form):
    text = form.format(key=key, value=value)
    assert redact_text(text) == text and not holds_secret(text)


@settings(max_examples=100, deadline=None)
@given(key=SECRET_KEY.map(lambda k: k.lstrip("+").replace(".", "_")), value=SECRET_IN_TEXT, depth=st.integers(0, 3))
def test_nested_data_never_keeps_a_secret(key, value, depth):
    data = {key: value, "dsn": f"host=h {key}={value}", "n": 1}
    for _ in range(depth):
        data = {"outer": [data, "seed=1"]}
    assert value not in json.dumps(redact(data))


def test_nested_data_redacts_secret_keys_and_urls_but_keeps_the_rest():
    data = {
        "db": {"password": "hunter2", "port": 5432, "url": "postgresql://u:s3cr3t@h/d", "token": None},
        "backbone": {"class_token": True, "num_tokens": 4},
        "record_keys": ["test/map@r"],
        "overrides": ["+x.api_key=tok-123", "seed=1"],
        "pin": {"passwd": 1234},
    }
    out = redact(data)
    assert out["db"] == {"password": MASK, "port": 5432, "url": "postgresql://u:***@h/d", "token": None}
    assert out["backbone"] == data["backbone"] and out["record_keys"] == ["test/map@r"]
    assert out["overrides"] == ["+x.api_key=***", "seed=1"] and out["pin"] == {"passwd": MASK}


def test_log_records_are_redacted_whatever_the_handler(tmp_path):
    import harness  # noqa: F401  (installs the redacting log record factory)

    path = tmp_path / "x.log"
    handler = logging.FileHandler(path)
    log = logging.getLogger("harness.test_redact")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        log.info("connecting to %s", "postgresql://u:hunter2@h/d")
        try:
            raise RuntimeError("bad url postgresql://u:s3cr3t@h/d")
        except RuntimeError:
            log.exception("failed with db.password=%s", "p@ss@w0rd")
    finally:
        log.removeHandler(handler)
        handler.close()
    text = path.read_text()
    assert "postgresql://u:***@h/d" in text and "RuntimeError" in text
    assert not [s for s in SECRETS if s in text]


# ----------------------------------------------------------------------------------------------- on disk
SECRET_OVERRIDES = [
    "+db.password=hunter2",
    "+db.url='postgresql://u:p@ss@w0rd@db.lab/x'",
    "+db.link='https://h/x?token=tok-123&n=1'",
]
DSN_OVERRIDE = '+dsn="host=db.lab user=u PGPASSWORD=dsn-s3cr3t"'  # a libpq DSN in one quoted override
SECRET_VALUES = ["hunter2", "p@ss@w0rd", "ss@w0rd", "tok-123", "dsn-s3cr3t"]
TRACKERS = "logger=[tensorboard,wandb,mlflow,csv]"


def leaks(root) -> list:
    files = [p for p in root.rglob("*") if p.is_file()]
    assert files
    return [(str(p), s) for p in files for s in SECRET_VALUES if s.encode() in p.read_bytes()]


def test_a_password_in_any_override_of_a_grid_is_in_no_file_of_the_run_or_of_any_tracker(results, tmp_path):
    """Every file the run and each tracker writes (W&B's offline run file and its logs, MLflow's store,
    TensorBoard's event files, the CSV tables), wherever the trackers put them: their home folders too."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    home = tmp_path / "home"  # W&B and MLflow write caches and logs under $HOME and $TMPDIR
    (home / "tmp").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(HOME=str(home), TMPDIR=str(home / "tmp"), WANDB_MODE="offline")
    proc = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            f"paths.results={results}",
            TRACKERS,
            *SECRET_OVERRIDES,
            DSN_OVERRIDE,
            "trainer.epochs=1",
            "sampler.batches_per_epoch=1",
            "eval.nmi=false",
            "eval.utilization=false",
            "seed=0",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in results.rglob("*")}
    assert {"config.yaml", "overrides.txt", "record.json", "run.log", "summary.json", "multirun.yaml"} <= names
    assert {"metrics.csv", "results.csv", "meta.yaml"} <= names  # CSV and MLflow wrote
    assert [p for p in results.rglob("*.wandb")] and [p for p in results.rglob("events.out.tfevents.*")]
    assert not leaks(results) and not leaks_anywhere(home)
    overrides = next(results.rglob("overrides.txt")).read_text()
    assert "+db.password=***" in overrides and "postgresql://u:***@db.lab/x" in overrides
    assert "token=***&n=1" in overrides and 'PGPASSWORD=***"' in overrides
    [run_file] = results.rglob("*.wandb")  # W&B's own metadata (the command line) is off: the config is redacted
    from harness.tracking.wandb_file import read_run

    assert read_run(run_file)["run"] is not None


@pytest.mark.slow
def test_a_password_in_a_search_override_is_nowhere_on_disk(results):
    import subprocess
    import sys

    from conftest import REPO
    from test_search import TINY

    proc = subprocess.run(
        [
            sys.executable,
            "run.py",
            "-m",
            "sweep=tune_eps",
            f"paths.results={results}",
            *TINY,
            *SECRET_OVERRIDES,
            "hydra.sweeper.n_trials=1",
            "hydra.sweeper.n_workers=1",
            "trainer.epochs=1",
            "eval.utilization=false",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {p.name for p in results.rglob("*")}
    assert {"search.yaml", "best.yaml", "trials.csv", "summary.json", "study.db", "overrides.txt"} <= names
    assert not leaks(results)


@pytest.mark.parametrize(
    "override,secret",
    [
        ("+db.password=hunter2", True),
        ("+db.url='postgresql://u:p@ss@w0rd@db.lab/x'", True),
        ("+db.link='https://h/x?token=tok-123&n=1'", True),
        ('+dsn="host=h user=u password=hunter2"', True),  # a libpq DSN: the pair inside the quotes
        ("+db.PGPASSWORD=hunter2", True),
        ("+git.remote=https://ghp_tok123abc@github.com/o/r.git", True),
        ("+db.password=${oc.env:DB_PASSWORD}", False),  # resolved in the job, from its environment
        ("+db.password=$\\{oc.env\\:DB_PASSWORD\\}", False),  # as Hydra's sweeper escapes it
        ("+db.url='postgresql://u:${oc.env:DB_PASSWORD}@db.lab/x'", False),
        ("dataset.root=/data/token_set", False),
        ("optimizer.lr=1e-3,1e30", False),
    ],
)
def test_an_override_holds_a_secret_unless_it_comes_from_the_environment(override, secret):
    from harness.redact import holds_secret

    assert holds_secret(override) is secret


def test_a_dsn_holding_a_password_is_refused_before_submitit_pickles_anything(capsys):
    from hydra_plugins.harness_launchers.launchers import refuse_secrets

    with pytest.raises(SystemExit) as code:
        refuse_secrets([["seed=0"], ['+dsn="host=h user=u password=hunter2"']])
    err = capsys.readouterr().err
    assert code.value.code == 2 and err.count("\n") == 1 and "hunter2" not in err
    assert err.startswith("error: the override '+dsn=\"host=h user=u password=***\"' holds a secret")
    refuse_secrets([["seed=0"], ['+dsn="host=h user=u password=${oc.env:PGPASSWORD}"']])  # from the environment


@pytest.mark.slow
def test_submitit_jobs_refuse_a_secret_in_clear_and_take_it_from_the_environment(results):
    """Submitit pickles each job's config into its folder, out of the redaction's reach: a secret typed in clear
    is refused before anything is submitted; ${oc.env:...} reaches the job and no file holds the value."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    def sweep(*overrides):
        return subprocess.run(
            [
                sys.executable,
                "run.py",
                "-m",
                f"paths.results={results}",
                "hydra/launcher=submitit_local",
                "trainer.epochs=1",
                "sampler.batches_per_epoch=1",
                "eval.nmi=false",
                "eval.utilization=false",
                "trainer.progress=false",
                *overrides,
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, DB_PASSWORD="hunter2"),
        )

    refused = sweep("+db.password=hunter2", "seed=0,1")
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(
        "error: the override '+db.password=***' holds a secret"
    ), refused.stderr[-2000:]
    assert "${oc.env:VAR}" in refused.stderr and not list(results.rglob("*.pkl")) and not leaks_anywhere(results)

    done = sweep("+db.password=${oc.env:DB_PASSWORD}", "seed=0")
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(results.rglob("*.pkl")) and not leaks(results)
    [record] = [records.read_record(p.parent) for p in results.rglob("record.json")]
    assert record["status"] == "finished" and record["config/db.password"] == MASK  # it was resolved, then redacted


def leaks_anywhere(root) -> list:
    """leaks() for a tree that may be empty."""
    return leaks(root) if any(p.is_file() for p in root.rglob("*")) else []
