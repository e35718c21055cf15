"""Where the real PyCOMPSs 3.3 code sits for tests (../shared/third_party/compss-3.3, beside the project)."""
from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPSS_33 = os.environ.get("COMPSS_FAKE_REAL") or os.path.normpath(
    os.path.join(ROOT, "..", "shared", "third_party", "compss-3.3"))
if not os.path.isdir(COMPSS_33) and os.path.isdir("/work/shared/third_party/compss-3.3"):
    COMPSS_33 = "/work/shared/third_party/compss-3.3"  # a worktree without the ../shared link
REAL_PYCOMPSS = os.path.join(COMPSS_33, "python")
requires_real = pytest.mark.skipif(not os.path.isdir(COMPSS_33),
                                   reason=f"the real COMPSs 3.3 code is not at {COMPSS_33} (../shared is absent)")
