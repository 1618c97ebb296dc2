"""A loopback HTTP server that answers the KFP v2beta1 REST calls `kfp.Client` makes and records
every request, so tests can drive the real client and assert on what it sent.

It keeps pipelines, versions, experiments, runs and recurring runs in memory, assigns ids, and
answers list calls honouring the `display_name` EQUALS filter the client uses (recurring runs
also by experiment, in pages), and deletes recurring runs. It is not a KFP backend: nothing
executes. `fail` maps a path prefix to an HTTP status to simulate auth errors.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/apis/v2beta1"
NOW = "2026-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeKfpApi:
    fail: dict[str, int] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring_runs: dict[str, dict] = field(default_factory=dict)
    uploads: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._recurring_created = 0
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> FakeKfpApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                api._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                api._handle(self, "POST")

            def do_DELETE(self) -> None:  # noqa: N802
                api._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)]

    # --- request handling ---------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        parsed = urllib.parse.urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type", "")
        body: Any = None
        if raw and "json" in ctype:
            body = json.loads(raw)
        elif raw:
            body = {"_multipart_bytes": len(raw)}
            self.uploads.append(raw)
        record = Recorded(method, parsed.path, urllib.parse.parse_qs(parsed.query),
                          {k.lower(): v for k, v in h.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
            for prefix, status in self.fail.items():
                if parsed.path.startswith(prefix):
                    return self._send(h, {"error": "denied", "code": 16, "message": "denied"},
                                      status)
            status, answer = self._route(method, parsed.path, record)
        self._send(h, answer, status)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, obj: Any, status: int = 200) -> None:
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _name_filter(record: Recorded) -> str | None:
        raw = record.query.get("filter", [None])[0]
        if not raw:
            return None
        for pred in json.loads(raw).get("predicates", []):
            if pred.get("key") in ("display_name", "name"):
                return pred.get("string_value", pred.get("stringValue"))
        return None

    def _route(self, method: str, path: str, rec: Recorded) -> tuple[int, Any]:
        if not path.startswith(API):
            return 404, {"error": f"not found: {path}"}
        p = path[len(API):]
        if method == "GET" and p == "/healthz":
            return 200, {"multi_user": False}
        if p == "/experiments":
            if method == "GET":
                name = self._name_filter(rec)
                found = [e for e in self.experiments.values()
                         if name is None or e["display_name"] == name]
                return 200, {"experiments": found, "total_size": len(found)}
            exp_id = f"exp-{len(self.experiments) + 1}"
            self.experiments[exp_id] = {"experiment_id": exp_id, "created_at": NOW,
                                        "display_name": rec.body["display_name"]}
            return 200, self.experiments[exp_id]
        if p == "/pipelines" and method == "GET":
            name = self._name_filter(rec)
            found = [x for x in self.pipelines.values()
                     if name is None or x["display_name"] == name]
            return 200, {"pipelines": found, "total_size": len(found)}
        if p == "/pipelines/upload" and method == "POST":
            name = rec.query.get("name", rec.query.get("display_name", ["pipeline"]))[0]
            if any(x["display_name"] == name for x in self.pipelines.values()):
                return 409, {"error": f"pipeline {name} already exists", "code": 6}
            pid = f"pl-{len(self.pipelines) + 1}"
            self.pipelines[pid] = {"pipeline_id": pid, "display_name": name,
                                   "created_at": NOW}
            self._add_version(pid, name)
            return 200, self.pipelines[pid]
        if p == "/pipelines/upload_version" and method == "POST":
            pid = rec.query.get("pipelineid", rec.query.get("pipeline_id", [""]))[0]
            if pid not in self.pipelines:
                return 404, {"error": f"pipeline {pid} not found", "code": 5}
            name = rec.query.get("name", rec.query.get("display_name", ["v"]))[0]
            if any(v["display_name"] == name and v["pipeline_id"] == pid
                   for v in self.versions.values()):
                return 409, {"error": f"version {name} already exists", "code": 6}
            return 200, self._add_version(pid, name)
        if p == "/runs" and method == "POST":
            run_id = f"run-{len(self.runs) + 1}"
            self.runs[run_id] = {**rec.body, "run_id": run_id, "created_at": NOW,
                                 "state": "PENDING"}
            return 200, self.runs[run_id]
        if p == "/recurringruns" and method == "POST":
            body = rec.body
            cron = body.get("trigger", {}).get("cron_schedule", {}).get("cron", "")
            if len(cron.split()) not in (1, 2, 6):  # the backend rejects what robfig rejects
                return 400, {"error": f"invalid cron {cron!r}", "code": 3}
            self._recurring_created += 1  # not the count held: deleted ids are never reused
            rr_id = f"rr-{self._recurring_created}"
            self.recurring_runs[rr_id] = {**body, "recurring_run_id": rr_id,
                                          "created_at": NOW, "status": "ENABLED"}
            return 200, self.recurring_runs[rr_id]
        if p == "/recurringruns" and method == "GET":
            return 200, self._list_recurring_runs(rec)
        if p.startswith("/recurringruns/") and method == "DELETE":
            rr_id = p[len("/recurringruns/"):]
            if self.recurring_runs.pop(rr_id, None) is None:
                return 404, {"error": f"recurring run {rr_id} not found", "code": 5}
            return 200, {}
        return 404, {"error": f"not faked: {method} {path}"}

    def _list_recurring_runs(self, rec: Recorded) -> dict:
        """One page (page_size, page_token = the next index), in creation order, of the
        experiment's recurring runs, honouring the display_name EQUALS filter. The list is
        answered under the proto's field name `recurringRuns`, as the generated client reads
        it (`V2beta1ListRecurringRunsResponse.attribute_map`)."""
        experiment = rec.query.get("experiment_id", [None])[0]
        name = self._name_filter(rec)
        found = [r for r in self.recurring_runs.values()
                 if (experiment is None or r.get("experiment_id") == experiment)
                 and (name is None or r.get("display_name") == name)]
        start = int(rec.query.get("page_token", ["0"])[0] or 0)
        size = int(rec.query.get("page_size", ["10"])[0] or 10)
        page = found[start:start + size]
        answer: dict[str, Any] = {"recurringRuns": page, "total_size": len(found)}
        if start + size < len(found):
            answer["next_page_token"] = str(start + size)
        return answer

    def _add_version(self, pipeline_id: str, name: str) -> dict:
        vid = f"pv-{len(self.versions) + 1}"
        self.versions[vid] = {"pipeline_id": pipeline_id, "pipeline_version_id": vid,
                              "display_name": name, "created_at": NOW}
        return self.versions[vid]
