"""No secret is written to disk: the one place that removes them, used by every writer.

Configs, overrides, records, summaries, search reports, tables and logs go through :func:`redact` (nested
data) or :func:`redact_text` (a string: a log line, a traceback, an override), which replace with ``***``:

* the password of a URL: ``postgresql://user:pw@host``, ``redis://:pw@host``, a password holding ``@``
  (``scheme://u:p@ss@host``: everything up to the host's ``@`` is the password);
* secret query parameters: ``?password=..``, ``&token=..``, ``&api_key=..`` (see :data:`SECRET_NAME`);
* the value of a key named like a secret (:func:`is_secret_name`: ``password``, ``PGPASSWORD``, ``pass``, ``pw``,
  ``secretKey``, ``aws_key``, ...), in data (``{"db_password": ..}``) and in text (``db.password=..``,
  ``password: ..``, ``"token": ".."``), also inside a quoted value (a libpq DSN typed as one override,
  ``+dsn="host=h user=u password=X"``: the pairs inside the quotes are redacted like the ones outside);
* a token given as the user of a URL (a git remote ``https://ghp_...@github.com/org/repo.git``; W&B and MLflow
  can record the remote).

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

# A key or parameter name that holds a secret: password, passwd, pass, pw, pwd, secret(s), token, api_key, apikey,
# access_key, private_key, aws_*key, credential(s), auth / authorization, with any prefix or suffix separated by
# _ . - or a camelCase boundary (secretKey, dbPassword); password, passwd, passphrase and secret also glued to a
# prefix (PGPASSWORD, clientsecret).
_WORDS = (
    r"password|passwd|passphrase|pass|pw|pwd|secrets?|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key"
    r"|aws[_-]?(?:[a-z]+[_-])?key|credentials?|auth|authorization"
)
_GLUED = r"password|passwd|passphrase|secrets?"
_END = r"(?:$|[_.\-])"
SECRET_NAME = re.compile(rf"(?:(?:^|[_.\-])(?:{_WORDS})|(?:{_GLUED})){_END}", re.IGNORECASE)
# in a URL's query string, also key=, sig= and signature= (API keys, signed URLs)
SECRET_PARAM = re.compile(rf"(?:(?:^|[_.\-])(?:{_WORDS}|key|sig|signature)|(?:{_GLUED})){_END}", re.IGNORECASE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")

# scheme://[user]:password@host : the password runs to the LAST '@' of the URL that a host follows (it may hold
# '@' and '/': ``u:a@b/c@host`` masks ``a@b/c``, where a URL parser would read host ``b``; masking too much is
# harmless, too little is a leak); the host runs up to the first '/', '?', '#', quote, whitespace or the end.
_URL_USERINFO = re.compile(
    r"(?P<head>[a-zA-Z][\w+.\-]*://[^\s:/@'\"]*):(?P<pw>[^\s'\"]*)@(?=[^\s@/?#'\"]*(?:[/?#\s'\"]|$))"
)
# scheme://TOKEN@host: a token given as a URL's user, as git remotes carry one (https://ghp_...@github.com/o/r.git);
# a plain user name (git@, postgres@) is kept: only a known token prefix or a long mix of letters and digits goes
_URL_TOKEN_USER = re.compile(r"(?P<head>\b[a-zA-Z][\w+.\-]*://)(?P<user>[^\s:/@'\"]+)@")
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "gldt-", "hf_", "xox")
# ?name=value / &name=value / ;name=value (value up to & # whitespace or a quote)
_QUERY_PARAM = re.compile(r"(?P<head>[?&;](?P<name>[\w.\-]+)=)(?P<value>[^&#\s'\"]*)")
# name=value, name: value, "name": "value" (an override, a YAML or JSON line, an environment line); a bare value
# runs up to whitespace, a quote, or a , } ] that ends it (followed by whitespace, a quote or the end:
# ``{a: x, b: y}``), so a secret holding a comma (``password=ab,cd``) is masked whole
_KEY_VALUE = re.compile(
    r"(?P<head>(?P<q>[\"']?)(?P<name>[+~]?[A-Za-z_][\w.\-]*)(?P=q)\s*(?:=|:\s)\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|(?:[^\s,'\"}\]]|[,}\]](?=[^\s,'\"}\]]))+)"
)


def is_secret_name(name) -> bool:
    return isinstance(name, str) and bool(SECRET_NAME.search(_CAMEL.sub("_", name)))


def _is_secret_param(name: str) -> bool:
    return bool(SECRET_PARAM.search(_CAMEL.sub("_", name)))


def redact_text(text: str) -> str:
    """``text`` with URL passwords, secret query parameters and secret ``key=value`` values replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] else m[0], text)
    text = _URL_TOKEN_USER.sub(lambda m: f"{m['head']}{MASK}@" if _looks_like_token(m["user"]) else m[0], text)
    text = _QUERY_PARAM.sub(
        lambda m: f"{m['head']}{MASK}" if _is_secret_param(m["name"]) and m["value"] else m[0], text
    )
    return _KEY_VALUE.sub(_mask_value, text)


_INTERPOLATION = re.compile(r"\$\\?\{[^}]*\}")  # ${oc.env:X}, also as a sweep override escapes it: $\{oc.env\:X\}


def holds_secret(text: str) -> bool:
    """Whether ``text`` (an override) holds a secret typed in clear: what :func:`redact_text` would mask, not
    counting an interpolation such as ``${oc.env:DB_PASSWORD}``, which is resolved from the environment."""
    plain = _INTERPOLATION.sub("", str(text))
    return redact_text(plain) != plain


def _looks_like_token(user: str) -> bool:
    if user.lower().startswith(_TOKEN_PREFIXES):
        return True
    return len(user) >= 20 and any(c.isdigit() for c in user) and any(c.isalpha() for c in user)


def _mask_value(m: re.Match) -> str:
    value = m["value"]
    if not is_secret_name(m["name"].lstrip("+~")):
        if len(value) > 2 and value[0] in "\"'" and value[-1] == value[0]:  # pairs inside a quoted value (a DSN)
            inner = redact_text(value[1:-1])
            if inner != value[1:-1]:
                return f"{m['head']}{value[0]}{inner}{value[0]}"
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
