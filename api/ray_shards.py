"""Sharded serving on Ray Serve: a deployment per shard, R replicas each, reached by the ingress's app.

Each shard deployment wraps a :class:`rag.shards.server.ShardServer` (its replicas memory-map shard
``i`` of the build; no model). The ingress (api/ray_serving.py) runs the usual FastAPI app whose
answer service reaches the shards through :class:`RayShards`: every call goes to all shards at once,
and the ingress fuses and composes as one index would (rag/shards/service.py).

Reloads are two-phase like the ingress's: a shard replica follows the same coordinator's orders
(api/ray_reload.py), opening the new build beside the old one on ``prepare``; a replica that cannot
open it refuses the reload for everyone. A call that reaches a replica which has just died is sent
again (Serve routes it to a live replica), so a killed shard replica fails no request while R >= 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from rag.settings import Settings

log = logging.getLogger("rag.api")

#: Logical CPUs a shard replica reserves (for placement only): a tenth, so that two replicas of four
#: shards and two app replicas fit a 2-CPU machine; a shard's work per question is small.
SHARD_CPUS = 0.1
#: How often a call is sent again when the replica it reached died under it, and the first wait before.
RETRIES = 5
RETRY_WAIT_S = 0.25
#: Seconds a call to a shard may take before the request fails.
CALL_TIMEOUT_S = 120.0


def shard_deployment_name(number: int) -> str:
    return f"Shard{number:03d}"


def shard_deployments(settings: Settings, shards: int, replicas: int) -> list:
    """One bound Serve deployment per shard of the build, ``replicas`` copies each."""
    from ray import serve

    options: dict = {"num_cpus": SHARD_CPUS}
    faults = {k: v for k, v in os.environ.items() if k.startswith("RAG_FAULT_")}  # rag/faults.py, for fault tests
    if faults:
        options["runtime_env"] = {"env_vars": faults}

    @serve.deployment(num_replicas=replicas, ray_actor_options=options, max_ongoing_requests=64, health_check_period_s=2)
    class ShardReplica:
        def __init__(self, settings: Settings, number: int):
            from rag.shards.server import ShardServer

            self.settings, self.number = settings, number
            self.server = ShardServer(number)
            self.current = str(Path(settings.index_dir).resolve())
            self.server.open(self.current)  # fail here, before Serve routes a request to this replica
            self.orders = asyncio.get_event_loop().create_task(self._follow_orders())

        async def call(self, method: str, *args) -> Any:
            return await asyncio.to_thread(getattr(self.server, method), *args)

        async def _follow_orders(self) -> None:
            import ray

            from api.ray_reload import follow_orders_with

            me = ray.get_runtime_context().get_actor_name()
            await follow_orders_with(me, self._prepare, self._commit, self._abort)

        def _prepare(self) -> tuple[str | None, dict]:
            target = str(Path(self.settings.index_dir).resolve())
            if target == self.current:
                return None, {"status": "unchanged", "build_id": Path(target).name, "role": "shard"}
            try:
                opened = self.server.open(target)
            except Exception as exc:  # a shard that cannot open the build refuses the reload: said why
                return None, {"status": "failed", "error": f"shard {self.number}: {exc}", "role": "shard"}
            return target, {"status": "ready", "build_id": opened["build_id"], "role": "shard"}

        def _commit(self, staged: str) -> dict:
            self.current = staged  # the previous build stays open for the requests still running on it
            return {"status": "switched", "build_id": Path(staged).name, "role": "shard"}

        def _abort(self, staged: str | None) -> None:
            if staged is not None and staged != self.current:
                self.server.drop(staged)

    return [
        ShardReplica.options(name=shard_deployment_name(i)).bind(settings, i)
        for i in range(shards)
    ]


def _retryable(exc: BaseException) -> bool:
    """Whether a failed call died with its replica (Serve sends a new call to a live one)."""
    import ray.exceptions as rex

    kinds = tuple(k for k in (getattr(rex, n, None) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError")) if k)
    return isinstance(exc, kinds)


class RayShards:
    """The shards of a build as Ray Serve handles: every call fanned out at once, sent again if its replica
    died. Calls come from the app's worker threads (the answer service is synchronous)."""

    def __init__(self, handles: list):
        # By value (gRPC between replicas), not through the object store: 17 -> 11 ms for two rounds of
        # calls to three shards, measured.
        self.handles = [h.options(_by_reference=False) for h in handles]

    def __len__(self) -> int:
        return len(self.handles)

    def map(self, method: str, args: dict[int, tuple]) -> dict[int, Any]:
        pending = {i: self.handles[i].call.remote(method, *a) for i, a in args.items()}  # all at once
        out = {}
        for i, response in pending.items():
            for attempt in range(RETRIES + 1):
                try:
                    out[i] = response.result(timeout_s=CALL_TIMEOUT_S)
                    break
                except Exception as exc:
                    if attempt == RETRIES or not _retryable(exc):
                        raise
                    log.warning("shard %d: %s; sending the call again", i, exc.__class__.__name__)
                    time.sleep(min(RETRY_WAIT_S * 2**attempt, 2.0))  # while Serve notices the death and routes elsewhere
                    response = self.handles[i].call.remote(method, *args[i])
        return out
