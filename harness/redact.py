"""No secret is written to disk: the one place that removes them, used by every writer.

Configs, overrides, records, summaries, search reports, tables and logs go through :func:`redact` (nested
data) or :func:`redact_text` (a string: a log line, a traceback, an override), which replace with ``***``:

* the password of a URL: ``postgresql://user:pw@host``, ``redis://:pw@host``, a password holding ``@``
  (``scheme://u:p@ss@host``: everything up to the host's ``@`` is the password);
* secret query parameters: ``?password=..``, ``&token=..``, ``&api_key=..`` (see :data:`SECRET_NAME`);
* the value of a key named like a secret, in data (``{"db_password": ..}``) and in text (``db.password=..``,
  ``password: ..``, ``"token": ".."``).

Log records are redacted when they are created (:func:`install_log_redaction`, done on ``import harness``),
so every handler, the run's ``run.log`` and submitit's job logs included, receives redacted text.
Credentials belong in the environment (e.g. ``storage=env`` for an Optuna database URL); what is redacted
here is what a user typed anyway.
"""

from __future__ import annotations

import logging
import re
import traceback

MASK = "***"

# A key or parameter name that holds a secret: password, passwd, pwd, secret, token, api_key, apikey,
# access_key, private_key, credential(s), auth / authorization, with any prefix or suffix separated by _ . -
_WORDS = (
    r"password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|credentials?|auth|authorization"
)
SECRET_NAME = re.compile(rf"(?:^|[_.\-])(?:{_WORDS})(?:$|[_.\-])", re.IGNORECASE)
# in a URL's query string, also key=, sig= and signature= (API keys, signed URLs)
SECRET_PARAM = re.compile(rf"(?:^|[_.\-])(?:{_WORDS}|key|sig|signature)(?:$|[_.\-])", re.IGNORECASE)

# scheme://[user]:password@host : the password runs to the LAST '@' of the URL that a host follows (it may hold
# '@' and '/': ``u:a@b/c@host`` masks ``a@b/c``, where a URL parser would read host ``b``; masking too much is
# harmless, too little is a leak); the host runs up to the first '/', '?', '#', quote, whitespace or the end.
_URL_USERINFO = re.compile(
    r"(?P<head>[a-zA-Z][\w+.\-]*://[^\s:/@'\"]*):(?P<pw>[^\s'\"]*)@(?=[^\s@/?#'\"]*(?:[/?#\s'\"]|$))"
)
# ?name=value / &name=value / ;name=value (value up to & # whitespace or a quote)
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[\w.\-]+)=)(?P<value>[^&#\s'\"]*)")
# name=value, name: value, "name": "value" (an override, a YAML or JSON line, an environment line)
_KEY_VALUE = re.compile(
    r"(?P<head>(?P<q>[\"']?)(?P<name>[+~]?[A-Za-z_][\w.\-]*)(?P=q)\s*(?:=|:\s)\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s,'\"}\]]+)"
)


def is_secret_name(name) -> bool:
    return isinstance(name, str) and bool(SECRET_NAME.search(name))


def redact_text(text: str) -> str:
    """``text`` with URL passwords, secret query parameters and secret ``key=value`` values replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)
    text = _QUERY_PARAM.sub(
        lambda m: f"{m['head']}{MASK}" if SECRET_PARAM.search(m["name"]) and m["value"] else m[0], text
    )
    return _KEY_VALUE.sub(_mask_value, text)


_INTERPOLATION = re.compile(r"\$\\?\{[^}]*\}")  # ${oc.env:X}, also as a sweep override escapes it: $\{oc.env\:X\}


def holds_secret(text: str) -> bool:
    """Whether ``text`` (an override) holds a secret typed in clear: what :func:`redact_text` would mask, not
    counting an interpolation such as ``${oc.env:DB_PASSWORD}``, which is resolved from the environment."""
    plain = _INTERPOLATION.sub("", str(text))
    return redact_text(plain).replace(MASK, "") != plain


def _mask_value(m: re.Match) -> str:
    value = m["value"]
    if not is_secret_name(m["name"].lstrip("+~")):
        return m[0]
    bare = value.strip("\"'")
    if bare.startswith(MASK) or bare in ("", "null", "None", "true", "false", "True", "False") or bare.startswith("${"):
        return m[0]  # nothing secret there (an interpolation names a variable, it holds no value)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{m['head']}{quote}{MASK}{quote}"


def redact(value):
    """A copy of nested data (dicts, lists, tuples, strings) with every secret replaced by ``***``."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_item(k, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def _redact_item(key, value):
    if is_secret_name(key) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        if isinstance(value, str) and (not value or value.startswith("${")):
            return value
        return MASK
    return redact(value)


# ----------------------------------------------------------------------------------------------- logs
_installed = False


def install_log_redaction() -> None:
    """Redact every log record when it is created (message and traceback), whatever handler writes it."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        return redact_record(record)

    logging.setLogRecordFactory(factory)
    _installed = True


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: leave it to logging's own error report
        return record
    clean = redact_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        record.exc_text = redact_text("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
    return record
