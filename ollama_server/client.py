"""Client: the training host's Python client of the companion API (seed §5.8), over `requests`."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any
from typing import Callable
from typing import Optional
from urllib.parse import quote

import requests

DEFAULT_URL = "http://localhost:11435"
TERMINAL = frozenset({"done", "failed", "cancelled"})
CHUNK = 1024 * 1024


class ClientError(Exception):
    """The server answered 4xx/5xx; `status` is the HTTP status, `detail` its message."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


def default_base_url(environ: Optional[dict[str, str]] = None) -> str:
    """OLLAMA_SERVER_URL, else http://<INFERENCE_HOST or localhost>:<INFERENCE_PORT or 11435>."""
    env = os.environ if environ is None else environ
    if env.get("OLLAMA_SERVER_URL"):
        return env["OLLAMA_SERVER_URL"].rstrip("/")
    if env.get("INFERENCE_HOST") or env.get("INFERENCE_PORT"):
        return f"http://{env.get('INFERENCE_HOST') or 'localhost'}:{env.get('INFERENCE_PORT') or 11435}"
    return DEFAULT_URL


def error_detail(response: requests.Response) -> str:
    """The message of an error answer: its "detail" or "error" (OpenAI's {"error": {"message"}} too)."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        for key in ("detail", "error"):
            value = body.get(key)
            if isinstance(value, dict) and "message" in value:
                return str(value["message"])
            if value:
                return value if isinstance(value, str) else str(value)
    return str(body)


def _segment(value: str) -> str:
    return quote(str(value), safe="")


class Client:
    """One method per companion route; each returns the decoded JSON and raises ClientError on 4xx/5xx."""

    def __init__(self, base_url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = 60):
        self.base_url = (base_url or default_base_url()).rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        key = api_key if api_key is not None else os.environ.get("OLLAMA_SERVER_API_KEY")
        if key:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------
    def _send(self, method: str, path: str, stream: bool = False, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.base_url + path, timeout=self.timeout, stream=stream, **kwargs)
        if response.status_code >= 400:
            try:
                raise ClientError(response.status_code, error_detail(response))
            finally:
                response.close()
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    # --- service --------------------------------------------------------------------------------
    def health(self) -> dict:
        """GET /health (a 503 while loading is raised as ClientError)."""
        return self._json("GET", "/health")

    def info(self) -> dict:
        return self._json("GET", "/info")

    def version(self) -> dict:
        return self._json("GET", "/version")

    def config(self) -> dict:
        return self._json("GET", "/config")

    def status(self) -> dict:
        return self._json("GET", "/status")

    def diag(self) -> dict:
        return self._json("GET", "/diag")

    def gpu_stats(self) -> dict:
        return self._json("GET", "/gpu")

    def system(self) -> dict:
        return self._json("GET", "/system")

    def logs(self, component: str, lines: int = 100) -> dict:
        """GET /logs/<component>: {"component", "lines"}."""
        return self._json("GET", f"/logs/{_segment(component)}", params={"lines": lines})

    def power_profile(self) -> dict:
        return self._json("GET", "/settings/power_profile")

    def set_power_profile(self, name: str) -> dict:
        """POST /settings/power_profile?profile=<name> (a query parameter, as the seed sends it)."""
        return self._json("POST", "/settings/power_profile", params={"profile": name})

    # --- models ---------------------------------------------------------------------------------
    def list_models(self) -> dict:
        return self._json("GET", "/models")

    def register_model(self, model_id: str, path: Optional[str] = None, source: str = "api",
                       tags: Optional[str] = None, outtype: Optional[str] = None) -> dict:
        """POST /models/register; the id goes as the seed's `id` and as our `name`."""
        body = {"id": model_id, "name": model_id, "path": path, "source": source, "tags": tags, "outtype": outtype}
        return self._json("POST", "/models/register", json={k: v for k, v in body.items() if v is not None})

    def set_active_model(self, model_id: str) -> dict:
        """POST /models/set_active; the id goes as the seed's `id` and as our `model`."""
        return self._json("POST", "/models/set_active", json={"id": model_id, "model": model_id})

    def active_model(self) -> dict:
        return self._json("GET", "/models/active")

    def generate(self, prompt: str, **params: Any) -> dict:
        """POST /generate with the seed's body: {"prompt", model_id?, max_tokens?, temperature?, top_p?, mode?}."""
        return self._json("POST", "/generate", json={"prompt": prompt, **params})

    # --- jobs -----------------------------------------------------------------------------------
    def eval_job(self, model_id: str, name: str, dataset_ref: str, metrics: Optional[list[str]] = None,
                 max_samples: int = 1000, per_example_logging: bool = True, **extra: Any) -> dict:
        """POST /eval/jobs: {"job_id", "status"}; `extra` carries our own fields (max_new_tokens, pattern)."""
        body = {"model_id": model_id, "name": name, "dataset_ref": dataset_ref, "max_samples": max_samples,
                "per_example_logging": per_example_logging, **extra}
        if metrics is not None:
            body["metrics"] = list(metrics)
        return self._json("POST", "/eval/jobs", json=body)

    def get_job(self, job_id: str) -> dict:
        return self._json("GET", f"/jobs/{_segment(job_id)}")

    def get_eval_job(self, job_id: str) -> dict:
        return self._json("GET", f"/eval/jobs/{_segment(job_id)}")

    def data_gen_job(self, model_id: str, strategy: str, config: Optional[dict] = None,
                     num_samples: Optional[int] = None) -> dict:
        """POST /data_gen/jobs; `num_samples`, when given, goes into the config."""
        body_config = dict(config or {})
        if num_samples is not None:
            body_config["num_samples"] = num_samples
        return self._json("POST", "/data_gen/jobs", json={"model_id": model_id, "strategy": strategy,
                                                          "config": body_config})

    def get_data_gen_job(self, job_id: str) -> dict:
        return self._json("GET", f"/data_gen/jobs/{_segment(job_id)}")

    def list_jobs(self, type: Optional[str] = None, status: Optional[str] = None, limit: int = 100) -> dict:
        """GET /jobs: {"jobs": [...]}, newest first."""
        params = {"type": type, "status": status, "limit": limit}
        return self._json("GET", "/jobs", params={k: v for k, v in params.items() if v is not None})

    def job_stats(self) -> dict:
        return self._json("GET", "/jobs/stats")

    def cancel_job(self, job_id: str) -> dict:
        return self._json("POST", f"/jobs/{_segment(job_id)}/cancel")

    def wait_for_job(self, job_id: str, poll_interval: float = 10, timeout: Optional[float] = None,
                     on_poll: Optional[Callable[[dict], None]] = None) -> dict:
        """Poll GET /jobs/<id> until done, failed or cancelled; the last record. TimeoutError after `timeout`
        seconds; `on_poll` sees every record (the seed printed the status each time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.get_job(job_id)
            if on_poll is not None:
                on_poll(record)
            if record.get("status") in TERMINAL:
                return record
            wait = poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"job {job_id} is still {record.get('status')} after {timeout} s")
                wait = min(wait, remaining)  # one last look at the deadline itself
            time.sleep(wait)

    def download_shard(self, name: str, dest_dir: str | os.PathLike) -> Path:
        """Stream GET /shards/<name> into dest_dir/<name>; the file appears whole or not at all."""
        if not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(f"shard name must be a plain file name, got {name!r}")
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / name
        with self._send("GET", f"/shards/{_segment(name)}", stream=True) as response:
            handle, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
            try:
                with os.fdopen(handle, "wb") as out:
                    for chunk in response.iter_content(CHUNK):
                        out.write(chunk)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return target
