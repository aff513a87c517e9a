"""Moved to ``harness/processes.py``; this re-export is kept only for modules not yet switched.

tests/docs/ (edited separately) still imports from here. Import ``harness.processes`` in new code;
delete this file once nothing imports ``tests.support.processes``.
"""

from harness.processes import REPO_ROOT, AppServer, ProcessError, RedisServer, free_port

__all__ = ["REPO_ROOT", "AppServer", "ProcessError", "RedisServer", "free_port"]
