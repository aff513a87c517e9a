"""What the app checks of its Redis at startup, and warns about: settings that would log users out.

A Redis without persistence loses every session on restart; one that evicts keys under memory
pressure drops sessions at random; a primary with fewer replicas than ``replica_acks`` answers 503 to
every login. None of these stops the app (the operator may know better), but each is said loudly.
"""

from __future__ import annotations

import logging
from typing import Any

logger = logging.getLogger("starlette_refresh")


async def check_store_server(store: Any, replica_acks: int, label: str) -> None:
    """Reads what the store can tell of its server (where it can) and logs what would hurt."""
    persistence = getattr(store, "persistence", None)
    if persistence is not None:
        _warn_about_persistence(await persistence(), label)
    replication = getattr(store, "replication", None)
    if replica_acks and replication is not None:
        _warn_about_replicas(await replication(), replica_acks, label)


def _warn_about_persistence(config: dict[str, str] | None, label: str) -> None:
    if config is None:
        logger.info("could not read the Redis configuration (CONFIG GET refused); persistence not checked")
        return
    if config.get("appendonly", "no") == "no" and not config.get("save", "").strip():
        logger.warning(
            "Redis at %s has persistence off (appendonly no, no RDB saves): a Redis restart will log "
            "every user out. Enable appendonly yes (appendfsync everysec) on the session store.",
            label,
        )
    policy = config.get("maxmemory-policy", "noeviction")
    if policy != "noeviction":
        logger.warning(
            "Redis at %s evicts keys under memory pressure (maxmemory-policy %s): sessions could vanish "
            "and log users out. Use maxmemory-policy noeviction for the session store.",
            label,
            policy,
        )


def _warn_about_replicas(connected: int | None, wanted: int, label: str) -> None:
    if connected is not None and connected < wanted:
        logger.warning(
            "replica_acks=%d but the primary at %s has %d replica(s) connected: logins, logouts and "
            "revocations will answer 503 until enough replicas connect. Refreshes keep working.",
            wanted,
            label,
            connected,
        )
