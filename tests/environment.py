"""Loaded by pytest before Django reads its settings (`-p tests.environment` in pyproject).

Tests never write into a developer's ./var, and never reach a real USCIS account.
"""

import os
import tempfile

os.environ.setdefault("CASEWATCH_DATA_DIR", tempfile.mkdtemp(prefix="casewatch-test-"))
for _name in list(os.environ):
    if _name.startswith("CASEWATCH_USCIS_"):
        del os.environ[_name]
