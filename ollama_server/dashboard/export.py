"""Every dashboard table downloadable as CSV or JSON: pages register the function that builds each table's
rows (the same rows the page shows), and /dashboard/export/<table>.<csv|json> serves them."""
from __future__ import annotations

import csv
import io
import json
import time
from typing import Any
from typing import Callable

from flask import Response
from flask import abort

from ollama_server.dashboard.blueprint import bp

Rows = list[dict[str, Any]]
TABLES: dict[str, Callable[[], Rows]] = {}


def table(name: str) -> Callable[[Callable[[], Rows]], Callable[[], Rows]]:
    """Register a table's row builder under `name`."""
    def register(builder: Callable[[], Rows]) -> Callable[[], Rows]:
        TABLES[name] = builder
        return builder
    return register


def _cell(value: Any) -> Any:
    """Nested values (labels, components) as compact JSON text in a CSV cell."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "" if value is None else value


def to_csv(rows: Rows) -> str:
    """Rows -> CSV with a header of every column seen (first-seen order)."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _cell(row.get(key)) for key in columns})
    return out.getvalue()


@bp.get("/export/<table_name>.<fmt>")
def export(table_name: str, fmt: str):
    """One table as a download; 404 for an unknown table or format."""
    builder = TABLES.get(table_name)
    if builder is None or fmt not in ("csv", "json"):
        abort(404)
    rows = builder()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    filename = f"{table_name}-{stamp}.{fmt}"
    if fmt == "csv":
        body, mimetype = to_csv(rows), "text/csv"
    else:
        body, mimetype = json.dumps(rows, indent=1, default=str), "application/json"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                                      "Cache-Control": "no-store"})
