#!/usr/bin/env python3
"""A fault-injecting HTTP proxy between the operator and the AWS emulator (loopback only).

    python3 hack/faultproxy.py --upstream http://127.0.0.1:PORT --port-file FILE

listens on 127.0.0.1 (port 0: any free one, written to FILE once listening) and
forwards every request to the upstream. Faults are set at run time on the same port:

    PUT    /__faults   {"rules": [{"operations": ["CreateAccessKey"] | ["*"],
                                   "fault": "throttle" | "error5xx" | "lost" | "delay",
                                   "probability": 0.3, "count": 10, "delaySeconds": 2}],
                        "seed": 1}                          replace the rules
    GET    /__faults   counters per AWS operation: requests, forwarded, throttled,
                       errors5xx, lost, delayed
    DELETE /__faults   clear the rules (the counters stay)

- throttle: not forwarded; IAM's `Throttling` (HTTP 400) or EC2's
  `RequestLimitExceeded` (HTTP 503), in each service's own XML error format.
- error5xx: not forwarded; `InternalFailure` (500) or `ServiceUnavailable` (503).
- lost: forwarded (the write happens), then the answer is replaced by a 500: the
  "response lost after the write" case that makes a client retry a create.
- delay: forwarded after `delaySeconds`.

The first matching rule whose dice roll fires applies. The operation is the query
protocol's `Action` form field; the service (iam, ec2, sts) comes from the SigV4
credential scope. Bodies are never printed: CreateAccessKey's answer holds a secret.
"""

import argparse
import http.client
import json
import random
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "host", "content-length",
}


class State:
    def __init__(self, upstream):
        self.upstream = urllib.parse.urlsplit(upstream)
        self.lock = threading.Lock()
        self.rules = []
        self.fired = []
        self.rng = random.Random()
        self.counters = {}

    def count(self, op, field):
        with self.lock:
            c = self.counters.setdefault(op, {"requests": 0, "forwarded": 0, "throttled": 0,
                                              "errors5xx": 0, "lost": 0, "delayed": 0})
            c[field] += 1

    def pick(self, op):
        with self.lock:
            for i, r in enumerate(self.rules):
                ops = r.get("operations", ["*"])
                if "*" not in ops and op not in ops:
                    continue
                if r.get("count") is not None and self.fired[i] >= r["count"]:
                    continue
                if self.rng.random() < float(r.get("probability", 1.0)):
                    self.fired[i] += 1
                    return r
        return None


def error_body(service, code, message):
    rid = str(uuid.uuid4())
    if service == "ec2":
        return (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>")
    kind = "Sender" if code == "Throttling" else "Receiver"
    return (f"<ErrorResponse xmlns=\"https://{service}.amazonaws.com/doc/2010-05-08/\"><Error><Type>{kind}</Type>"
            f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{rid}</RequestId></ErrorResponse>")


def service_of(headers):
    auth = headers.get("Authorization", "")
    marker = "Credential="
    if marker in auth:
        scope = auth.split(marker, 1)[1].split(",", 1)[0].split("/")
        if len(scope) >= 4:
            return scope[3]
    return "iam"


def operation_of(headers, body):
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1]
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        return form.get("Action", ["Unknown"])[0]
    except Exception:
        return "Unknown"


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def reply(self, code, body, content_type="text/xml"):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def control(self, body):
            if self.command == "GET":
                with state.lock:
                    return self.reply(200, json.dumps(state.counters), "application/json")
            if self.command == "DELETE":
                with state.lock:
                    state.rules, state.fired = [], []
                return self.reply(200, "{}", "application/json")
            if self.command == "POST" and self.path.endswith("/reset-counters"):
                with state.lock:
                    state.counters = {}
                return self.reply(200, "{}", "application/json")
            if self.command == "PUT":
                spec = json.loads(body or b"{}")
                with state.lock:
                    state.rules = list(spec.get("rules", []))
                    state.fired = [0] * len(state.rules)
                    if "seed" in spec:
                        state.rng.seed(spec["seed"])
                return self.reply(200, "{}", "application/json")
            return self.reply(405, "method not allowed", "text/plain")

        def forward(self, body):
            u = state.upstream
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                headers["Host"] = u.netloc
                headers["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            finally:
                conn.close()

        def handle_any(self):
            try:
                body = self.read_body()
            except Exception:
                return self.reply(400, "bad request", "text/plain")
            if self.path.startswith("/__faults"):
                return self.control(body)
            op = operation_of(self.headers, body)
            service = service_of(self.headers)
            state.count(op, "requests")
            rule = state.pick(op)
            fault = rule.get("fault") if rule else None
            if fault == "throttle":
                state.count(op, "throttled")
                sys.stderr.write(f"faultproxy: {op}: throttle\n")
                if service == "ec2":
                    return self.reply(503, error_body(service, "RequestLimitExceeded", "Request limit exceeded."))
                return self.reply(400, error_body(service, "Throttling", "Rate exceeded"))
            if fault == "error5xx":
                state.count(op, "errors5xx")
                sys.stderr.write(f"faultproxy: {op}: error5xx\n")
                if state.rng.random() < 0.5:
                    return self.reply(500, error_body(service, "InternalFailure" if service != "ec2" else "InternalError", "Internal failure"))
                return self.reply(503, error_body(service, "ServiceUnavailable", "Service unavailable"))
            if fault == "delay":
                state.count(op, "delayed")
                time.sleep(float(rule.get("delaySeconds", 1)))
            try:
                status, headers, data = self.forward(body)
            except Exception as e:
                sys.stderr.write(f"faultproxy: {op}: upstream failed: {type(e).__name__}\n")
                return self.reply(502, error_body(service, "InternalFailure", "upstream unreachable"))
            state.count(op, "forwarded")
            if fault == "lost":
                state.count(op, "lost")
                sys.stderr.write(f"faultproxy: {op}: response lost after the write\n")
                return self.reply(500, error_body(service, "InternalFailure" if service != "ec2" else "InternalError", "Internal failure"))
            self.send_response(status)
            for k, v in headers:
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = handle_any

    return Handler


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--upstream", required=True)
    p.add_argument("--port-file")
    a = p.parse_args()
    host, port = a.listen.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("faultproxy: listens on loopback only")
    server = ThreadingHTTPServer((host, int(port)), make_handler(State(a.upstream)))
    server.daemon_threads = True
    if a.port_file:
        with open(a.port_file + ".tmp", "w") as f:
            f.write(str(server.server_address[1]))
        import os
        os.replace(a.port_file + ".tmp", a.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
