"""``rag serve --engine ray``: the same FastAPI app run by Ray Serve, R replicas behind Serve's HTTP proxy.

Each replica builds the app exactly as ``rag serve`` does (``create_app``) and opens the index
memory-mapped; Serve's proxy spreads requests over the replicas and starts a replacement for one
that dies. A sharded build is served by a deployment per shard (api/ray_shards.py) that the app's
replicas search and gather evidence from; the app itself then holds no chunk. A reload
(``/admin/reload``, ``/admin/documents``, SIGHUP to this process) reaches every replica in two
phases (api/ray_reload.py). Ray is imported only here.
"""

from __future__ import annotations

import logging
import signal
import threading

from rag.settings import Settings

APP_NAME = "rag"
DEPLOYMENT = "RagApp"
#: Logical CPUs each replica reserves on the cluster: half a CPU lets two replicas share a 2-core node.
REPLICA_CPUS = 0.5
#: Requests one replica takes at once; the app bounds its own CPU-bound work (a pool of threads).
MAX_ONGOING = 64

log = logging.getLogger("rag.api")


def deployment(settings: Settings, replicas: int, shards: int = 0):
    """The Serve application: ``replicas`` copies of the app, each built (and its index opened) in its
    replica; for a sharded build of ``shards`` shards, also ``replicas`` copies of each shard's deployment."""
    from ray import serve

    from api.ray_shards import shard_deployments

    @serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": REPLICA_CPUS},
        max_ongoing_requests=MAX_ONGOING,
        health_check_period_s=2,
    )
    @serve.ingress()
    class RagApp:
        def __init__(self, settings: Settings, shards: list | None = None):
            self.settings, self.shards = settings, shards or []

        async def __serve_build_asgi_app__(self):
            import asyncio

            from api.app import create_app
            from api.ray_reload import follow_orders, reload_everywhere

            # The model and the index load in the app's start-up, before Serve routes a request here.
            app = create_app(self.settings)
            app.state.ctx.reload_everywhere = reload_everywhere
            if self.shards:
                from api.ray_shards import RayShards

                app.state.ctx.shards = RayShards(self.shards)  # before start-up opens the build through them
            self.orders = asyncio.get_running_loop().create_task(follow_orders(app.state.ctx))
            return app

    return RagApp.bind(settings, shard_deployments(settings, shards, replicas) if shards else None)


def replica_prefix() -> str:
    """The start of the names Serve gives the replica actors of this application (app and shards)."""
    return f"SERVE_REPLICA::{APP_NAME}#"


def shard_count(settings: Settings) -> int:
    """The shards of the build the index link names (0 for one index)."""
    from rag.index.shards import is_sharded, read_sharded_manifest

    return len(read_sharded_manifest(settings.index_dir.resolve())["shards"]) if is_sharded(settings.index_dir) else 0


def check_capacity(replicas: int, shards: int) -> None:
    """Refuse, in one line, an application the cluster has too few CPUs for (Serve would wait for them forever)."""
    import ray

    from api.ray_shards import SHARD_CPUS
    from core.errors import ConfigError

    need = replicas * REPLICA_CPUS + shards * replicas * SHARD_CPUS
    total = float(ray.cluster_resources().get("CPU", 0.0))
    if need > total + 1e-9:
        replicas_of = f"{replicas} app replica{'s' * (replicas != 1)}" + (f" and {shards * replicas} shard replicas" if shards else "")
        raise ConfigError(
            f"the Ray cluster has {total:g} CPUs but {replicas_of} reserve {need:g}; serve with fewer --replicas, "
            "or add nodes to the cluster (ray start --address)"
        )


def start(settings: Settings):
    """Start the reload coordinator and the application (replicas loaded and routed) on the connected cluster.

    Returns the coordinator's handle: the caller keeps it for as long as it serves (Ray ends an
    actor whose owner holds no handle to it any more).
    """
    from ray import serve

    from api.ray_reload import start_coordinator

    shards = shard_count(settings)
    check_capacity(settings.replicas, shards)
    coordinator = start_coordinator(replica_prefix())
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(deployment(settings, settings.replicas, shards), name=APP_NAME, route_prefix="/", blocking=False)
    return coordinator


def run_on_ray(settings: Settings) -> None:
    """Start the app on the cluster at ``settings.ray_address`` (or a local one), serve until SIGINT/SIGTERM, then remove it."""
    from rag.shards.ray_build import connect

    connect(settings.ray_address)
    stop, hangup, started = threading.Event(), threading.Event(), threading.Event()

    def on_stop(*_) -> None:
        stop.set()
        if not started.is_set():
            raise KeyboardInterrupt  # a start still waiting for its replicas is left, and the app removed

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: hangup.set())
    try:
        coordinator = start(settings)  # noqa: F841 (kept alive while serving)
        started.set()
        n, shards = settings.replicas, shard_count(settings)
        of_shards = f", {shards} shards with {n} replica{'s' * (n != 1)} each" if shards else ""
        print(f"ready on http://{settings.host}:{settings.port} ({n} Ray Serve replica{'s' * (n != 1)}{of_shards})", flush=True)
        while not stop.wait(0.5):
            if hangup.is_set():
                hangup.clear()
                _reload_on_signal()
    finally:
        stop_serving()


def _reload_on_signal() -> None:
    """SIGHUP: the two-phase reload of every replica; the outcome goes to the terminal."""
    import asyncio

    from api.ray_reload import reload_everywhere
    from core.errors import RagError

    try:
        result = asyncio.run(reload_everywhere())
        print(f"SIGHUP reload: {result['status']} (build {result['build_id']}, {result['replicas']} replicas)", flush=True)
    except RagError as exc:
        print(f"SIGHUP reload refused, every replica still serves the previous build: {exc}", flush=True)


def stop_serving() -> None:
    """Remove the app; stop Serve itself when no other application runs on the cluster."""
    import ray
    from ray import serve

    from api.ray_reload import COORDINATOR, NAMESPACE

    try:
        serve.delete(APP_NAME)
        if not serve.status().applications:
            serve.shutdown()
        ray.kill(ray.get_actor(COORDINATOR, namespace=NAMESPACE))
    except Exception as exc:  # a cluster already gone: nothing left to stop
        log.warning("stopping Ray Serve: %s", exc)

