"""gunicorn settings for the service: one worker (the model lives in it), many threads (one per stream)."""
from ollama_server import paths
from ollama_server.settings import load_settings

_settings = load_settings(paths.service_config_path())

wsgi_app = "ollama_server:create_app()"
bind = f"{_settings.host}:{_settings.port}"
worker_class = "gthread"
workers = 1          # several workers would each load every model
threads = 64         # a stream holds a thread for its whole life
timeout = 120        # heartbeat timeout; gthread heartbeats from its main loop, not per request
graceful_timeout = 30           # SIGTERM: in-flight requests get this long to finish
keepalive = 5
loglevel = _settings.log_level.lower()
accesslog = "-"
errorlog = "-"


def post_worker_init(worker):
    """Start background work in the worker only, once (never on import, never in the master); on SIGTERM,
    tell open-ended streams (the dashboard's websockets) to end, so the graceful stop waits only for requests."""
    import signal

    services = worker.wsgi.extensions["ollama_server"]
    services.start()
    stop = worker.handle_exit  # gunicorn installed it before this hook runs; chain to it

    def handle_exit(sig, frame):
        services.stopping.set()
        stop(sig, frame)
    signal.signal(signal.SIGTERM, handle_exit)
    signal.signal(signal.SIGHUP, services.reloader.reload_in_background)  # the master forwards its SIGHUP
    _refuse_new_connections_while_draining(worker)


def _refuse_new_connections_while_draining(worker):
    """While a stopping worker drains, new connections are refused at once instead of waiting unaccepted.

    gthread stops accepting but keeps its listening sockets open until the drain ends (the master has closed
    its own copies): a connection made meanwhile would sit in the backlog, then be reset when the worker exits,
    which a load balancer sees as a failed request rather than a refused connection it passes on."""
    set_accept_enabled = getattr(worker, "set_accept_enabled", None)
    if set_accept_enabled is None:  # another worker class: nothing to adjust
        return

    def set_accept(enabled):
        set_accept_enabled(enabled)
        if not enabled and not worker.alive:  # the graceful stop, the listeners just taken off the poller
            for listener in worker.sockets:
                listener.close()
    worker.set_accept_enabled = set_accept


def when_ready(server):
    """SIGHUP to the master (systemctl reload) re-reads the settings file inside the worker, where the models
    live, instead of gunicorn's own reload (new workers, every model loaded again)."""
    import os
    import signal

    def forward(sig, frame):
        for pid in list(server.WORKERS):
            os.kill(pid, signal.SIGHUP)
    signal.signal(signal.SIGHUP, forward)


def worker_exit(server, worker):
    """Unload models when the worker stops."""
    app = getattr(worker, "wsgi", None)
    if app is not None and "ollama_server" in getattr(app, "extensions", {}):
        app.extensions["ollama_server"].close()
