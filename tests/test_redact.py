"""No secret on disk: the one redaction module (harness/redact.py) and the writers that go through it."""

import logging

import pytest

from harness import records
from harness.redact import MASK, redact, redact_text

SECRETS = ["hunter2", "p@ss@w0rd", "s3cr3t", "tok-123", "AIzaKEY", "a/b@c"]


@pytest.mark.parametrize("text,kept", [
    ("postgresql://user:hunter2@db.lab:5432/optuna", "postgresql://user:***@db.lab:5432/optuna"),
    ("postgresql://:hunter2@db.lab/optuna", "postgresql://:***@db.lab/optuna"),          # no user name
    ("postgresql://u:p@ss@w0rd@db.lab/optuna?sslmode=require", "postgresql://u:***@db.lab/optuna?sslmode=require"),
    ("mysql://u:a/b@c@host/db", "mysql://u:***@host/db"),                              # '/' and '@' in it
    ("https://h/x?password=hunter2&n=1", "https://h/x?password=***&n=1"),
    ("https://h/x?n=1&token=tok-123#top", "https://h/x?n=1&token=***#top"),
    ("https://h/x?key=AIzaKEY&sig=s3cr3t", "https://h/x?key=***&sig=***"),
    ("+db.password=hunter2 trainer.epochs=3", "+db.password=*** trainer.epochs=3"),
    ("tracker.api_key=tok-123", "tracker.api_key=***"),
    ("client_secret: s3cr3t", "client_secret: ***"),
    ('{"db_password": "hunter2", "n": 1}', '{"db_password": "***", "n": 1}'),
    ("password='p w' x=1", "password='***' x=1"),
])
def test_text_redaction_catches_every_form(text, kept):
    assert redact_text(text) == kept
    assert redact_text(kept) == kept  # idempotent


@pytest.mark.parametrize("text", [
    "http://host:8080/path", "results/runs/digits/ms__none__mlp__1a2b3c4d__seed0", "test/map@r=0.5123",
    "signal_delay_s: 120", "cls_token: true", "storage: ${oc.env:HARNESS_OPTUNA_STORAGE}", "num_tokens=8",
    "error: trainer.epochs=abc must be an integer", "sort_key=name",
])
def test_text_without_secrets_is_unchanged(text):
    assert redact_text(text) == text


def test_nested_data_redacts_secret_keys_and_urls_but_keeps_the_rest():
    data = {"db": {"password": "hunter2", "port": 5432, "url": "postgresql://u:s3cr3t@h/d", "token": None},
            "backbone": {"class_token": True, "num_tokens": 4}, "record_keys": ["test/map@r"],
            "overrides": ["+x.api_key=tok-123", "seed=1"], "pin": {"passwd": 1234}}
    out = redact(data)
    assert out["db"] == {"password": MASK, "port": 5432, "url": "postgresql://u:***@h/d", "token": None}
    assert out["backbone"] == data["backbone"] and out["record_keys"] == ["test/map@r"]
    assert out["overrides"] == ["+x.api_key=***", "seed=1"] and out["pin"] == {"passwd": MASK}
    assert records.redact is redact  # the records module re-exports the one implementation


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
