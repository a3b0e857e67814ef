"""HTTP adapters: each dialect translates requests to engine types and chunks to its own framing."""
from __future__ import annotations

from flask import Flask


def register_api(app: Flask) -> None:
    """Register every dialect's blueprint and the app-wide HTTP concerns."""
    from ollama_server.api import auth
    from ollama_server.api import browser_guard
    from ollama_server.api import client_gone
    from ollama_server.api import refusals
    from ollama_server.api import request_context
    from ollama_server.api import alert_actions, cost, model_benchmarks, pull_jobs  # the dashboard's actions
    from ollama_server.api.anthropic.routes import bp as anthropic_bp
    from ollama_server.api.companion.about import bp as companion_about_bp
    from ollama_server.api.companion.jobs_routes import bp as companion_jobs_bp
    from ollama_server.api.companion.power import bp as companion_power_bp
    from ollama_server.api.configure import bp as configure_bp
    from ollama_server.api.errors import handlers as errors
    from ollama_server.api.health import bp as health_bp
    from ollama_server.api.llama_server.routes import bp as llama_server_bp
    from ollama_server.api.monitoring_routes import bp as monitoring_bp
    from ollama_server.api.openapi import bp as openapi_bp
    from ollama_server.api.metrics_export import bp as metrics_export_bp
    from ollama_server.api.ollama.embed import bp as ollama_embed_bp
    from ollama_server.api.ollama.manage import bp as ollama_manage_bp
    from ollama_server.api.ollama.pull import bp as ollama_pull_bp
    from ollama_server.api.ollama.routes import bp as ollama_bp
    from ollama_server.api.registry import bp as registry_bp
    from ollama_server.api.openai.embeddings import bp as openai_embeddings_bp
    from ollama_server.api.openai.routes import bp as openai_bp
    from ollama_server.api.requests import bp as requests_bp
    from ollama_server.api.responses.routes import bp as responses_bp
    from ollama_server.api.tgi.routes import bp as tgi_bp
    from ollama_server.api.vllm.routes import bp as vllm_bp
    from ollama_server.api.weight_distribution import bp as weight_distribution_bp

    refusals.init_app(app)  # first: its clock must start before any check can refuse the request
    request_context.init_app(app)  # before the checks: their log lines carry the request's id too
    browser_guard.init_app(app)
    auth.init_app(app)
    browser_guard.init_content_type_check(app)
    errors.init_app(app)
    client_gone.init_app(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)  # GET /openapi.json, made from the url_map
    app.register_blueprint(metrics_export_bp)
    app.register_blueprint(openai_bp)
    app.register_blueprint(openai_embeddings_bp)
    app.register_blueprint(ollama_embed_bp)
    app.register_blueprint(anthropic_bp)  # Anthropic Messages under /v1/messages
    app.register_blueprint(llama_server_bp)  # llama-server's /infill
    app.register_blueprint(responses_bp)  # OpenAI Responses under /v1/responses
    app.register_blueprint(requests_bp)
    app.register_blueprint(ollama_bp)
    app.register_blueprint(tgi_bp)
    app.register_blueprint(vllm_bp)
    app.register_blueprint(ollama_manage_bp)
    app.register_blueprint(ollama_pull_bp)
    app.register_blueprint(registry_bp)
    app.register_blueprint(weight_distribution_bp)
    app.register_blueprint(monitoring_bp)
    app.register_blueprint(configure_bp)  # runtime configuration
    app.register_blueprint(companion_jobs_bp)  # the training loop's jobs, shards
    app.register_blueprint(companion_power_bp)  # power profiles
    app.register_blueprint(companion_about_bp)  # /config, /logs, /status, /diag
    for actions in (alert_actions, model_benchmarks, pull_jobs, cost):
        app.register_blueprint(actions.bp)
