"""Great Expectations without the cost of the libraries only unused expectations need.

GX imports ``scipy.stats`` (KL-divergence and KS-test expectations) and ``altair`` (their
charts) when it is imported, for expectations no suite here uses: a third of the import
(1M world's fork server: GX and the suites 3.4 -> 2.3 CPU s). ``install`` makes those
modules lazy (``importlib.util.LazyLoader``): their code runs on first use of an
attribute, so an expectation that needs them still works; only the import is deferred.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence

# The modules GX imports eagerly for expectations the suites do not use.
LAZY_MODULES = ("scipy.stats", "altair")


class _LazyFinder(importlib.abc.MetaPathFinder):
    """Finds ``modules`` with the other finders, then wraps their loader in a lazy one."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        if name not in self.modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def install(modules: Sequence[str] = LAZY_MODULES) -> None:
    """Import ``modules`` lazily from now on in this process (once; a module already
    imported stays as it is)."""
    if not any(isinstance(f, _LazyFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyFinder(modules))
