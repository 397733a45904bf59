"""Reload on Ray Serve in two phases: every replica loads and verifies the new build beside the old one,
then all switch; a replica that cannot load it leaves every replica on the old build. The replicas of
a sharded build's shards (api/ray_shards.py) take part in the same way.

A request reaches one replica only, so the replica that receives ``POST /admin/reload`` asks a
coordinator (a named Ray actor started with the application) to run the reload. Each replica
long-polls the coordinator for orders: ``prepare`` (open the build the index link names, answer a
question with it, keep it aside), then ``commit`` (serve it) or ``abort`` (drop it). The replicas
that take part are those registered and still alive (Serve names its replica actors); one that
Ray starts later opens the build the index link names then, which is the committed one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from core.errors import RagError

COORDINATOR = "rag-serve-reload"
NAMESPACE = "rag"
#: How long a reload waits for every replica to load the new build (a model is already loaded).
PREPARE_TIMEOUT_S = 300.0

log = logging.getLogger("rag.api")


class ReloadCoordinator:
    """A Ray actor (async): hands out numbered orders to the replicas and gathers their replies."""

    def __init__(self, replica_prefix: str):
        self.prefix = replica_prefix
        self.epoch, self.action = 0, "none"
        self.changed = asyncio.Event()
        self.replies: dict[int, dict[str, dict]] = {}
        self.members: set[str] = set()
        self.lock = asyncio.Lock()

    def current(self) -> int:
        return self.epoch

    async def next_order(self, replica: str, seen: int) -> dict:
        """Wait until there is an order newer than ``seen`` (a replica's long poll)."""
        self.members.add(replica)
        while self.epoch <= seen:
            await self.changed.wait()
        return {"epoch": self.epoch, "action": self.action}

    def reply(self, replica: str, epoch: int, result: dict) -> None:
        self.replies.setdefault(epoch, {})[replica] = result

    def _order(self, action: str) -> int:
        self.epoch, self.action = self.epoch + 1, action
        self.changed.set()
        self.changed = asyncio.Event()
        return self.epoch

    def _live(self) -> set[str]:
        import ray

        alive = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(self.prefix)}
        self.members &= alive
        return set(self.members)

    async def _gather(self, epoch: int, timeout: float) -> tuple[set[str], dict[str, dict]]:
        """Replies to order ``epoch`` from every live member, or what arrived within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            live, got = self._live(), self.replies.get(epoch, {})
            if live <= set(got) or time.monotonic() > deadline:
                return live, {k: v for k, v in got.items() if k in live}
            await asyncio.sleep(0.05)

    async def reload(self, timeout: float = PREPARE_TIMEOUT_S) -> dict:
        async with self.lock:  # one reload at a time
            live, got = await self._gather(self._order("prepare"), timeout)
            failed = {k: v.get("error") or "no reply" for k in live if (v := got.get(k, {})).get("status") not in ("ready", "unchanged")}
            if not live:
                failed = {"replicas": "no replica is running"}
            if failed or all(v["status"] == "unchanged" for v in got.values()):
                self._order("abort")
                if failed:
                    return {"status": "refused", "error": "; ".join(sorted(set(failed.values())))}
                return {"status": "unchanged", "build_id": next(iter(got.values()))["build_id"], "replicas": _apps(got)}
            live, done = await self._gather(self._order("commit"), 60)
            # The reply of an app replica (not a shard's) says what the service now serves.
            first = min((v for v in got.values() if v["status"] == "ready"), key=lambda v: v.get("role") == "shard")
            return {**first, "status": "reloaded", "replicas": _apps(done), "shard_replicas": len(done) - _apps(done)}


def _apps(replies: dict[str, dict]) -> int:
    """How many of the replies come from app replicas (the others from shard replicas)."""
    return sum(1 for v in replies.values() if v.get("role") != "shard")


def start_coordinator(replica_prefix: str):
    """The coordinator of this application (created once, kept by the process that started the application)."""
    import ray

    remote = ray.remote(num_cpus=0)(ReloadCoordinator)
    return remote.options(name=COORDINATOR, namespace=NAMESPACE, get_if_exists=True).remote(replica_prefix)


async def reload_everywhere() -> dict:
    """What ``POST /admin/reload`` does on Ray: the two-phase reload of every replica; RagError when refused."""
    import ray

    result = await ray.get_actor(COORDINATOR, namespace=NAMESPACE).reload.remote()
    if result["status"] == "refused":
        raise RagError(result["error"])
    return result


async def follow_orders_with(me: str, prepare, commit, abort) -> None:
    """A replica's side, for as long as it runs: on ``prepare`` run ``prepare()`` (in a thread) -> (staged,
    reply); on ``commit`` switch to what was staged with ``commit(staged)`` -> reply; else ``abort(staged)``."""
    import ray

    coordinator = ray.get_actor(COORDINATOR, namespace=NAMESPACE)
    seen = await coordinator.current.remote()
    staged = None
    while True:
        order = await coordinator.next_order.remote(me, seen)
        seen = order["epoch"]
        if order["action"] == "prepare":
            staged, result = await asyncio.to_thread(prepare)
        elif order["action"] == "commit" and staged is not None:
            staged, result = None, commit(staged)
        else:
            abort(staged)
            staged, result = None, {"status": "dropped"}
        await coordinator.reply.remote(me, seen, result)


async def follow_orders(state) -> None:
    """An ingress replica's side: prepare, commit or abort its answer service as the coordinator orders."""
    import ray

    def commit(staged) -> dict:
        state.service = staged  # one reference assignment: atomic for every reader
        state.publish_build()
        log.info("reloaded the index: build %s", staged.index.build_id)
        return {"status": "switched", "build_id": staged.index.build_id}

    me = ray.get_runtime_context().get_actor_name()
    await follow_orders_with(me, lambda: _prepare(state), commit, lambda staged: None)


def _prepare(state) -> tuple[object | None, dict]:
    """Open and verify the build the index link names, beside the one being served."""
    from pathlib import Path

    old = state.service
    if old is None:
        return None, {"status": "failed", "error": "a replica is still loading its first index; retry shortly"}
    target = Path(state.settings.index_dir).resolve().name
    if old.index.build_id == target:
        return None, {"status": "unchanged", "build_id": target}
    try:
        fresh = state.open_service(old.retriever.encoder)
    except RagError as exc:
        return None, {"status": "failed", "error": str(exc)}
    except Exception as exc:  # anything else a broken build raises: refused, and said why
        return None, {"status": "failed", "error": f"{exc.__class__.__name__}: {exc}"}
    index = fresh.index
    return fresh, {
        "status": "ready", "build_id": index.build_id, "previous_build_id": old.index.build_id,
        "articles": len(index.articles), "chunks": len(index),
    }
