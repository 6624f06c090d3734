"""`r1lite serve --ray`: the HTTP server of server.py as a Ray Serve application (the `ray` extra).

Each replica is a Ray actor that loads the model itself, from a path every node can see (no
weights through Ray's object store), and serves server.Server's Starlette app with its own engine;
Ray's HTTP proxy spreads requests over the replicas (streams included) and restarts a replica that
dies. In Python:

    from ray import serve
    import r1lite.serving
    serve.run(r1lite.serving.ray_app("model.r1", replicas=2, threads=8))

or from a Serve config file: `import_path: r1lite.serving:build`, `args: {model: ..., replicas: 2}`.
"""

from __future__ import annotations

import os

DEPLOYMENT = "r1lite"  # the deployment's name, and the application's in `r1lite serve --ray`
EXTRA_HINT = "pip install 'r1lite[ray,server]'"


def check_ray_extra() -> None:
    """ImportError naming the extra when Ray Serve is not installed."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError:
        raise ImportError(f"r1lite serve --ray needs the ray extra: {EXTRA_HINT} "
                          "(ray[serve])") from None


def _positive(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def shared_path(model: str) -> str:
    """A model argument as replicas should read it: a local file or folder as its absolute path
    (replicas run in other working directories); store names, hub ids and "demo" as they are."""
    return os.path.abspath(model) if os.path.exists(model) else model


def ray_app(model, *, replicas: int = 1, threads: int = 1, name: str | None = None,
            context: int | None = None, kv_cache: str | None = None, max_batch: int = 8,
            api_key: str | None = None, webui: bool = True, log_level: str = "info"):
    """The Ray Serve application serving `model` (a path every node sees, or a store name / hub
    id each node resolves) with `replicas` replicas, each an engine of `threads` threads on as
    many of Ray's CPUs, decoding up to `max_batch` requests together (Ray sends a replica no more
    than that at once and queues the rest). name: the model id clients send (default: model);
    context, kv_cache: as r1lite.load's; api_key, webui, log_level: as `r1lite serve`'s."""
    check_ray_extra()
    from ray import serve

    from . import access_log

    for key, value in (("replicas", replicas), ("threads", threads), ("max_batch", max_batch)):
        _positive(key, value)
    if log_level not in access_log.LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(access_log.LEVELS)}, got {log_level!r}")
    model = shared_path(str(model))
    model_id = name or model
    load_kw = dict(threads=threads, context=context, kv_cache=kv_cache)
    server_kw = dict(api_key=api_key, max_batch=max_batch, webui=webui)

    def build():  # runs in each replica, when Ray starts it
        import r1lite
        from r1lite import access_log
        from r1lite.server import Server

        access_log.configure(log_level)  # the access lines go to the replica's Ray log
        server = Server(r1lite.load(model, **load_kw), model_id, **server_kw)
        app = server.app()
        app.state.r1lite_server = server  # for Replica.check_health
        return app

    deployment = serve.deployment(
        serve.ingress(build)(Replica), name=DEPLOYMENT, num_replicas=replicas,
        max_ongoing_requests=max_batch, ray_actor_options={"num_cpus": threads})
    return deployment.bind()


class Replica:
    """A replica's class: Ray Serve's wrapper around the app, plus the health check Ray calls
    every few seconds (an engine whose thread has stopped would leave requests waiting, so Ray
    replaces such a replica)."""

    def check_health(self) -> None:
        server = self.app.state.r1lite_server  # self.app: the ASGI app, from Ray's wrapper
        if server.engine.crashed():
            raise RuntimeError("the r1lite engine thread has stopped")


def local_model(model: str) -> str:
    """For a Ray started here: the model argument resolved once on this machine (the demo model
    fetched, a store name or hub id found) to an absolute path that exists, so that a wrong
    argument fails before Ray starts and replicas do not each download it."""
    from .resolve import resolve_model

    path = resolve_model(model)
    if not path.exists():
        raise FileNotFoundError(f"{model}: no such file or folder")
    return str(path.resolve())


def default_threads(replicas: int) -> int:
    """--threads with --ray when not given: this machine's cores shared among the replicas."""
    from .loader import default_threads as cores

    return max(1, cores() // replicas)


def check_local_room(replicas: int, threads: int) -> None:
    """ValueError when a Ray started here could not place every replica (it would wait forever)."""
    cpus = os.cpu_count() or 1
    if replicas * threads > cpus:
        raise ValueError(f"--replicas {replicas} x --threads {threads} needs {replicas * threads} "
                         f"CPUs; this machine has {cpus} (fewer, or join a cluster with "
                         "--ray-address)")


def serve_on_ray(model: str, *, address: str | None, host: str, port: int, quiet: bool = False,
                 **app_kw) -> None:
    """`r1lite serve --ray`: deploy ray_app(model, **app_kw) on the Ray cluster at `address`
    ("auto", or HOST:PORT of its head), or on a Ray started here when None, with Ray's HTTP proxy
    on host:port; serve until Ctrl-C, then remove the application (and stop a Ray started here)."""
    import logging
    import sys
    import time

    import ray
    from ray import serve

    app = ray_app(model, **app_kw)
    # "local": a new Ray here, even when this machine runs another one
    ray.init(address=address or "local", logging_level=logging.WARNING if quiet else logging.INFO,
             include_dashboard=False if address is None else None)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(app, name=DEPLOYMENT, route_prefix="/", blocking=False)
        where = _proxy_address() or (host, port)
        if where != (host, port):
            print(f"r1lite: warning: Serve already ran on this cluster, its proxy on "
                  f"{where[0]}:{where[1]}; --host/--port are not applied", file=sys.stderr)
        if not quiet:
            print(f"serving {app_kw.get('name') or model} on http://{where[0]}:{where[1]}/v1 "
                  f"through Ray ({app_kw.get('replicas', 1)} replicas; Ctrl-C stops)", file=sys.stderr)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if address is None:
            serve.shutdown()
        else:  # the cluster and its other applications stay
            serve.delete(DEPLOYMENT)
        ray.shutdown()


def _proxy_address():
    """(host, port) of the running Serve's HTTP proxy, or None when Ray does not tell (a
    private API: the controller keeps the options Serve first started with)."""
    try:
        from ray.serve.context import _get_global_client

        config = _get_global_client().http_config
        return config.host, config.port
    except Exception:
        return None


def build(args: dict):
    """ray_app from a Serve config file's `args` (`import_path: r1lite.serving:build`)."""
    args = dict(args)
    return ray_app(args.pop("model"), **args)
