"""``rag serve --engine ray``: the same FastAPI app run by Ray Serve, R replicas behind Serve's HTTP proxy.

Each replica builds the app exactly as ``rag serve`` does (``create_app``) and opens the index
memory-mapped; Serve's proxy spreads requests over the replicas and starts a replacement for one
that dies. A single index only (a sharded one is refused before anything starts). Reload is not
distributed: a request reaches one replica, so ``/admin/reload`` and ``/admin/documents`` answer
501 rather than leave the replicas serving different builds. Ray is imported only here.
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

RELOAD_REFUSAL = (
    "reload is not available under 'rag serve --engine ray': a request reaches one replica only, so the "
    "replicas would serve different builds; restart 'rag serve --engine ray' to serve a new build"
)

log = logging.getLogger("rag.api")


def deployment(settings: Settings, replicas: int):
    """The Serve application: ``replicas`` copies of the app, each built (and its index opened) in its replica."""
    from ray import serve

    @serve.deployment(
        name=DEPLOYMENT,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": REPLICA_CPUS},
        max_ongoing_requests=MAX_ONGOING,
        health_check_period_s=2,
    )
    @serve.ingress()
    class RagApp:
        def __init__(self, settings: Settings):
            self.settings = settings

        def __serve_build_asgi_app__(self):
            from api.app import create_app

            # The model and the index load in the app's start-up, before Serve routes a request here.
            app = create_app(self.settings)
            app.state.ctx.reload_refusal = RELOAD_REFUSAL
            return app

    return RagApp.bind(settings)


def run_on_ray(settings: Settings) -> None:
    """Start the app on the cluster at ``settings.ray_address`` (or a local one), serve until SIGINT/SIGTERM, then remove it."""
    from rag.index.ray_build import connect

    connect(settings.ray_address)
    from ray import serve

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    serve.start(http_options={"host": settings.host, "port": settings.port})
    try:
        serve.run(deployment(settings, settings.replicas), name=APP_NAME, route_prefix="/", blocking=False)
        log.info("ready: %d replicas", settings.replicas)
        print(f"ready on http://{settings.host}:{settings.port} ({settings.replicas} Ray Serve replicas)", flush=True)
        stop.wait()
    finally:
        stop_serving()


def stop_serving() -> None:
    """Remove the app; stop Serve itself when no other application runs on the cluster."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
        if not serve.status().applications:
            serve.shutdown()
    except Exception as exc:  # a cluster already gone: nothing left to stop
        log.warning("stopping Ray Serve: %s", exc)

