"""Sphinx configuration of the dml-harness documentation (MyST Markdown pages, furo theme).

`make docs` builds it strictly: `sphinx-build -W --keep-going -n` (every warning, a broken internal reference
included, is an error). `make linkcheck` checks the external links (it needs the network).
"""

import logging
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))  # the site's own extensions (the configuration reference)
sys.path.insert(0, str(ROOT))  # the harness, for autodoc, without an install

logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its "Loading faiss with AVX2" lines, on import

project = "dml-harness"
author = "the dml-harness developers"
copyright = "2026, the dml-harness developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "plain_docstrings",  # docs/_ext/plain_docstrings.py: the docstrings' indented blocks as literal blocks
    "config_reference",  # docs/_ext/config_reference.py: reference/config/*.md generated from conf/
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md", "Thumbs.db", ".DS_Store"]

# MyST: anchors for headings up to ### so that [text](page.md#a-heading) is checked like any reference
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "fieldlist"]
suppress_warnings = []

# References to the harness's own objects must resolve; names from other projects (torch, numpy, omegaconf,
# pandas, ...) are not documented here and have no intersphinx inventory offline, so they are let through.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|nn|numpy|np|pandas|pd|omegaconf|hydra|optuna|submitit|faiss|PIL|matplotlib|sklearn)(\..*)?"),
    (r"py:.*", r"(pytorch_metric_learning|FrEIA|timm|kornia|pathlib|logging|typing|collections|os|io)(\..*)?"),
    (r"py:.*", r"(Tensor|ndarray|DictConfig|ListConfig|DataFrame|Path|Module)"),
    (r"py:.*", r"(Any|Callable|Iterable|Iterator|Sequence|Mapping)"),
]
# module constants that docstrings name but that carry no docstring of their own (autodoc would show the type's)
nitpick_ignore = [
    ("py:data", name)
    for name in ("SECRET_NAME", "VERSION", "NON_SEMANTIC_KEYS", "NEUTRAL_DEFAULTS", "DATA_FACTS", "DISK_ERRORS")
]

autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
# heavy optional clients are imported only where used; none is needed to document the harness
autodoc_mock_imports = []

html_theme = "furo"
html_title = "dml-harness"
html_static_path = []

linkcheck_timeout = 15
linkcheck_retries = 2
