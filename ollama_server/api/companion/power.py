"""GET/POST /settings/power_profile: the companion API's power profiles (seed §5.4)."""
from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from ollama_server.api.errors import ApiError
from ollama_server.api.errors.dialects import COMPANION
from ollama_server.api.errors.handlers import install
from ollama_server.monitoring.power import PROFILES
from ollama_server.monitoring.power import PowerProfileError
from ollama_server.monitoring.power import PowerProfiles
from ollama_server.services import services

bp = Blueprint("companion_power", __name__)
install(bp, COMPANION)
ROUTE = "/settings/power_profile"
STATUS_KINDS = {400: "invalid_request", 403: "forbidden", 503: "unavailable"}  # the status is kept as given


def power_profiles() -> PowerProfiles:
    """The app's PowerProfiles; 503 when the jobs service (which owns it) was not built."""
    jobs = getattr(services(), "jobs", None)
    if jobs is None or getattr(jobs, "power", None) is None:
        raise ApiError("unavailable", "power profiles are not available: the jobs service is not running")
    return jobs.power


@bp.get(ROUTE)
def show():
    """{"current", "profiles", "max_concurrent_jobs"}."""
    return jsonify(power_profiles().describe())


@bp.post(ROUTE)
def apply():
    """Apply ?profile=<name> (or a JSON body {"profile"}) to every GPU; the seed's success shape."""
    name = _requested_profile()
    try:
        result = power_profiles().apply(name)
    except PowerProfileError as exc:
        raise ApiError(STATUS_KINDS.get(exc.status, "internal"), exc.message, param="profile",
                       status=exc.status) from None
    return jsonify(result)


def _requested_profile() -> str:
    # The seed takes a query parameter; a JSON body is accepted too, the query winning when both are sent.
    name: Any = request.args.get("profile")
    if name is None and request.data:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise ApiError("invalid_request", "the body must be a JSON object such as {\"profile\": \"quiet\"}",
                           param="profile")
        name = body.get("profile")
    if name is None:
        raise ApiError("invalid_request", f"profile is required (?profile=<name>). Choose from: {list(PROFILES)}",
                       param="profile")
    if not isinstance(name, str) or name not in PROFILES:
        raise ApiError("invalid_request", f"Invalid profile. Choose from: {list(PROFILES)}", param="profile")
    return name
