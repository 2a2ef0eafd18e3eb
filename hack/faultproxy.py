#!/usr/bin/env python3
"""A fault-injecting HTTP proxy for the e2e tests: it sits between the operator and
moto on loopback and makes chosen AWS operations fail the way AWS fails.

Usage:

    python3 hack/faultproxy.py --listen 127.0.0.1:0 \\
        --upstream http://127.0.0.1:MOTO_PORT --port-file /tmp/x/port [--exit-with-parent]

Once listening it writes the chosen port to --port-file (atomically: the file appears
complete or not at all). Point the client at http://127.0.0.1:PORT (e.g. with
AWS_ENDPOINT_URL). Every request (method, path, query, headers except hop-by-hop ones,
body; chunked request bodies are de-chunked) is forwarded to the upstream on a fresh
connection and the response relayed, unless a fault rule fires for it. The Host header
is passed through unchanged, so SigV4 signatures stay valid. When the upstream cannot
be reached (or breaks off) the client gets HTTP 502 and a log line.

The operation of a request is the form body's (or query string's) `Action` parameter
(AWS query protocol: IAM, STS, EC2), else the part after the dot of `X-Amz-Target`
(JSON protocols), else "unknown". The service is the one of the SigV4 credential scope
(`Credential=AKID/DATE/REGION/SERVICE/aws4_request`), which picks the error format:
EC2's `<Response><Errors>...`, JSON `{"__type": ...}` for X-Amz-Target requests, and
the query protocol's `<ErrorResponse>` for everything else (IAM, STS).

Control API, on the same port under /__faults (never forwarded):

    PUT /__faults       {"rules": [RULE, ...], "seed": 42}   replace the rules (and
                        re-seed the random generator when "seed" is given)
    GET /__faults       {"counters": {OP: {"requests", "forwarded", "throttled",
                        "errors5xx", "lost", "delayed"}}, "rules": [RULE + "fired"]}
    DELETE /__faults    remove all rules (counters stay)
    POST /__faults/reset-counters

    RULE = {"operations": ["CreateAccessKey"] | ["*"],  (shell patterns: "Describe*")
            "fault": "throttle" | "error5xx" | "lost" | "delay" | "ratelimit",
            "probability": 0.3,      (optional, default 1.0)
            "count": 2,              (optional: fire at most this many times)
            "delaySeconds": 10,      (required for "delay")
            "ratePerSecond": 20,     (required for "ratelimit")
            "latencySeconds": 0.1}   (optional for "ratelimit", default 0)

Rules are tried in order; the first one that matches the operation, has not used up
its count and wins its probability draw fires; at most one fault per request.

    throttle  not forwarded; IAM/STS: HTTP 400 Throttling, EC2: HTTP 503
              RequestLimitExceeded, JSON: HTTP 400 ThrottlingException
    error5xx  not forwarded; at random HTTP 500 (InternalFailure, EC2: InternalError)
              or HTTP 503 (ServiceUnavailable, EC2: Unavailable)
    lost      forwarded (the write happens), the upstream's answer is discarded and the
              client gets HTTP 500 InternalFailure: a response lost after the write
    delay     forwarded after sleeping delaySeconds (for client timeouts)
    ratelimit IAM's shape: one token bucket for every matching request (ratePerSecond
              tokens a second, as many held at most); a request that finds a token is
              forwarded, one that finds none is answered Throttling as above (and
              counts as the rule firing); either way after latencySeconds.

With FAULTPROXY_TRACE set, every request is logged with its monotonic time, operation
and what the rules made of it (`trace t=... op=... kind=...`), for the benchmark's
timelines.

Who called, also in GET /__faults: "callers" {SERVICE: {ACCESS_KEY_ID: n}} (the key id
of each request's SigV4 credential; ids are not secrets), and "webIdentities": for each
AssumeRoleWithWebIdentity, the token's `iss`, `sub` and `aud` claims and the RoleArn
(never the token itself).

Counters are per operation: "requests" counts every proxied request (faulted or not),
"forwarded" those sent upstream (including lost and delayed ones). A line per faulted
request goes to stderr; request and response bodies are never printed (access keys'
secrets travel in them). Standard library only.
"""

import argparse
import base64
import fnmatch
import http.client
import http.server
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid

FAULTS = ("throttle", "error5xx", "lost", "delay", "ratelimit")
COUNTER_FIELDS = ("requests", "forwarded", "throttled", "errors5xx", "lost", "delayed")
RULE_KEYS = {"operations", "fault", "probability", "count", "delaySeconds", "ratePerSecond",
             "latencySeconds"}
CONTROL_PREFIX = "/__faults"

# RFC 9110 7.6.1, plus Proxy-Connection which some clients still send.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}

CREDENTIAL_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/[^/,\s]+/([^/,\s]+)/aws4_request")
EC2_ACTION = re.compile(
    r"^(Describe|Associate|Disassociate|Replace|RunInstances|TerminateInstances)"
)

# kind: (query-protocol status, code, type, message), (EC2 status, code, message),
#       JSON __type (with the query protocol's status and message)
ERRORS = {
    "throttle": ((400, "Throttling", "Sender", "Rate exceeded"),
                 (503, "RequestLimitExceeded", "Request limit exceeded."),
                 "ThrottlingException"),
    "internal": ((500, "InternalFailure", "Receiver", "An internal error occurred."),
                 (500, "InternalError", "An internal error has occurred."),
                 "InternalFailure"),
    "unavailable": ((503, "ServiceUnavailable", "Receiver", "Service is unavailable."),
                    (503, "Unavailable", "The server is overloaded and can't handle the request."),
                    "ServiceUnavailableException"),
}


def log(msg):
    try:
        sys.stderr.write(f"faultproxy: {msg}\n")
        sys.stderr.flush()
    except Exception:
        pass


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def error_response(kind, fmt):
    """(status, content type, body) of an AWS error in the request's protocol."""
    (status, code, type_, message), ec2, json_type = ERRORS[kind]
    request_id = str(uuid.uuid4())
    if fmt == "ec2":
        status, code, message = ec2
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Response><Errors><Error><Code>{code}</Code>"
            f"<Message>{xml_escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return status, "text/xml", body.encode(), request_id
    if fmt == "json":
        body = json.dumps({"__type": json_type, "message": message})
        return status, "application/x-amz-json-1.1", body.encode(), request_id
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<ErrorResponse><Error><Type>{type_}</Type><Code>{code}</Code>"
        f"<Message>{xml_escape(message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return status, "text/xml", body.encode(), request_id


class BadRules(ValueError):
    pass


class UpstreamError(Exception):
    def __init__(self, phase, cause):
        super().__init__(f"{phase}: {cause.__class__.__name__}: {cause}")
        self.cause = cause


def parse_rules(doc):
    if not isinstance(doc, dict):
        raise BadRules("body must be a JSON object")
    unknown = set(doc) - {"rules", "seed"}
    if unknown:
        raise BadRules(f"unknown keys {sorted(unknown)}")
    seed = doc.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRules("seed must be an integer")
    rules = doc.get("rules", [])
    if not isinstance(rules, list):
        raise BadRules("rules must be a list")
    out = []
    for i, r in enumerate(rules):
        if not isinstance(r, dict):
            raise BadRules(f"rule {i}: must be an object")
        unknown = set(r) - RULE_KEYS
        if unknown:
            raise BadRules(f"rule {i}: unknown keys {sorted(unknown)}")
        ops = r.get("operations")
        if isinstance(ops, str):
            ops = [ops]
        if not ops or not isinstance(ops, list) or not all(isinstance(o, str) and o for o in ops):
            raise BadRules(f"rule {i}: operations must be a non-empty list of names")
        fault = r.get("fault")
        if fault not in FAULTS:
            raise BadRules(f"rule {i}: fault must be one of {', '.join(FAULTS)}")
        prob = r.get("probability", 1.0)
        if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
            raise BadRules(f"rule {i}: probability must be a number in [0, 1]")
        count = r.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise BadRules(f"rule {i}: count must be a non-negative integer")
        delay = r.get("delaySeconds")
        if fault == "delay":
            if isinstance(delay, bool) or not isinstance(delay, (int, float)) or delay < 0:
                raise BadRules(f"rule {i}: delay needs delaySeconds >= 0")
        elif delay is not None:
            raise BadRules(f"rule {i}: delaySeconds only applies to the delay fault")
        rate = r.get("ratePerSecond")
        latency = r.get("latencySeconds", 0)
        if fault == "ratelimit":
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise BadRules(f"rule {i}: ratelimit needs ratePerSecond > 0")
            if isinstance(latency, bool) or not isinstance(latency, (int, float)) or latency < 0:
                raise BadRules(f"rule {i}: latencySeconds must be >= 0")
        elif rate is not None or "latencySeconds" in r:
            raise BadRules(f"rule {i}: ratePerSecond and latencySeconds only apply to ratelimit")
        rule = {"operations": ops, "fault": fault, "probability": float(prob), "fired": 0}
        if count is not None:
            rule["count"] = count
        if fault == "delay":
            rule["delaySeconds"] = float(delay)
        if fault == "ratelimit":
            rule["ratePerSecond"] = float(rate)
            rule["latencySeconds"] = float(latency)
        out.append(rule)
    return out, seed


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.rng = random.Random()
        self.counters = {}
        self.callers = {}
        self.web_identities = []
        # ratelimit buckets by rule index: (tokens, last refill)
        self.buckets = {}

    def set_rules(self, rules, seed):
        with self.lock:
            self.rules = rules
            self.buckets = {}
            if seed is not None:
                self.rng = random.Random(seed)

    def clear_rules(self):
        with self.lock:
            self.rules = []

    def reset_counters(self):
        with self.lock:
            self.counters = {}
            self.callers = {}
            self.web_identities = []

    def note_caller(self, service, key_id):
        with self.lock:
            by_key = self.callers.setdefault(service, {})
            by_key[key_id] = by_key.get(key_id, 0) + 1

    def note_web_identity(self, claims):
        with self.lock:
            self.web_identities.append(claims)

    def bump(self, op, field):
        with self.lock:
            c = self.counters.setdefault(op, dict.fromkeys(COUNTER_FIELDS, 0))
            c[field] += 1

    def snapshot(self):
        with self.lock:
            return {
                "counters": {op: dict(c) for op, c in self.counters.items()},
                "rules": [dict(r) for r in self.rules],
                "callers": {s: dict(k) for s, k in self.callers.items()},
                "webIdentities": list(self.web_identities),
            }

    def pick(self, op):
        """The rule that fires for `op` (its `fired` bumped), or None; and for an
        error5xx, which of the two errors (drawn from the same seeded generator)."""
        with self.lock:
            for i, rule in enumerate(self.rules):
                if not any(fnmatch.fnmatchcase(op, p) for p in rule["operations"]):
                    continue
                if "count" in rule and rule["fired"] >= rule["count"]:
                    continue
                if rule["fault"] == "ratelimit":
                    rate = rule["ratePerSecond"]
                    now = time.monotonic()
                    tokens, at = self.buckets.get(i, (rate, now))
                    tokens = min(rate, tokens + (now - at) * rate)
                    if tokens >= 1:
                        self.buckets[i] = (tokens - 1, now)
                        return dict(rule), "pass"
                    self.buckets[i] = (tokens, now)
                    rule["fired"] += 1
                    return dict(rule), "throttle"
                if self.rng.random() < rule["probability"]:
                    rule["fired"] += 1
                    kind = None
                    if rule["fault"] == "error5xx":
                        kind = self.rng.choice(("internal", "unavailable"))
                    return dict(rule), kind
            return None, None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"
    # An idle keep-alive connection (or a stalled body) is dropped after this long.
    timeout = 300

    # --- plumbing -----------------------------------------------------------------

    def log_message(self, format, *args):
        if self.server.verbose:
            log(f"{self.address_string()} {format % args}")

    def log_error(self, format, *args):
        # Malformed requests and the like: short, never a body.
        log(f"{self.address_string()} {format % args}")

    def read_body(self):
        """The request body (de-chunked), or None after answering an error."""
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("client closed mid-chunk")
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self.send_error(400, "bad chunk size")
                    return None
                if size < 0:
                    self.send_error(400, "bad chunk size")
                    return None
                if size == 0:
                    # Trailers (dropped) up to the empty line.
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return b"".join(chunks)
                data = self.rfile.read(size)
                if len(data) < size:
                    raise ConnectionError("client closed mid-chunk")
                chunks.append(data)
                self.rfile.readline(3)  # the CRLF after the chunk
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return None
        data = self.rfile.read(n)
        if len(data) < n:
            raise ConnectionError("client closed mid-body")
        return data

    def send(self, status, content_type, body, extra_headers=()):
        self.send_response_only(status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra_headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def send_json(self, status, obj):
        self.send(status, "application/json", (json.dumps(obj, indent=1) + "\n").encode())

    # --- dispatch -----------------------------------------------------------------

    def handle_any(self):
        try:
            body = self.read_body()
            if body is None:
                return
            path = urllib.parse.urlsplit(self.path).path
            if path == CONTROL_PREFIX or path.startswith(CONTROL_PREFIX + "/"):
                self.control(path, body)
            else:
                self.proxy(body)
        except (ConnectionError, TimeoutError, OSError) as e:
            # The client went away (or stalled): nothing to answer.
            self.close_connection = True
            if self.server.verbose:
                log(f"{self.address_string()} connection dropped: {e.__class__.__name__}")
        except Exception as e:
            self.close_connection = True
            log(f"internal error on {self.command}: {e.__class__.__name__}: {e}")
            try:
                self.send(500, "text/plain", b"faultproxy internal error\n")
            except Exception:
                pass

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = handle_any

    # --- control API --------------------------------------------------------------

    def control(self, path, body):
        state = self.server.state
        sub = path[len(CONTROL_PREFIX):].rstrip("/")
        if sub == "":
            if self.command == "GET":
                return self.send_json(200, state.snapshot())
            if self.command == "PUT":
                try:
                    rules, seed = parse_rules(json.loads(body.decode("utf-8") or "null"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    return self.send_json(400, {"error": f"invalid JSON: {e}"})
                except BadRules as e:
                    return self.send_json(400, {"error": str(e)})
                state.set_rules(rules, seed)
                log(f"rules set: {json.dumps([{k: v for k, v in r.items() if k != 'fired'} for r in rules])}")
                return self.send_json(200, state.snapshot())
            if self.command == "DELETE":
                state.clear_rules()
                log("rules cleared")
                return self.send_json(200, state.snapshot())
            return self.send_json(405, {"error": "use GET, PUT or DELETE"})
        if sub == "/reset-counters":
            if self.command != "POST":
                return self.send_json(405, {"error": "use POST"})
            state.reset_counters()
            return self.send_json(200, state.snapshot())
        return self.send_json(404, {"error": f"no such control path {path}"})

    # --- proxying -----------------------------------------------------------------

    def classify(self, body):
        """(operation, service, error format, signing key id or "unsigned") of the request."""
        headers = self.headers
        query = urllib.parse.urlsplit(self.path).query
        op = None
        ctype = headers.get("Content-Type", "").lower()
        target = headers.get("X-Amz-Target")
        if body and (ctype.startswith("application/x-www-form-urlencoded") or
                     (not ctype and body[:7] == b"Action=")):
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            op = (form.get("Action") or [None])[0]
        qs = urllib.parse.parse_qs(query, keep_blank_values=True)
        if not op:
            op = (qs.get("Action") or [None])[0]
        if not op and target:
            op = target.rsplit(".", 1)[-1]
        op = op or "unknown"

        m = CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
        service = m.group(2) if m else None
        key_id = m.group(1) if m else "unsigned"
        if not service:
            cred = (qs.get("X-Amz-Credential") or [""])[0].split("/")
            service = cred[3] if len(cred) == 5 else None
        if not service:
            host = headers.get("Host", "")
            if host.startswith("ec2.") or EC2_ACTION.match(op):
                service = "ec2"
        if target or ctype.startswith("application/x-amz-json"):
            fmt = "json"
        elif service == "ec2":
            fmt = "ec2"
        else:
            fmt = "query"
        return op, service or "unknown", fmt, key_id

    def forward(self, body):
        """Send the request upstream; (status, reason, headers, body) of its answer.

        A fresh upstream connection per request, so a request is sent exactly once
        (no replays on stale keep-alive connections). Only connecting is retried:
        nothing has been sent then. The proxy closes first (no "Connection: close"),
        so the TIME_WAIT sockets of this churn stay on its side, where the kernel
        picks source ports knowing about them.
        """
        up = self.server.upstream
        conn = None
        for attempt in range(4):
            conn = http.client.HTTPConnection(up.hostname, up.port or 80,
                                              timeout=self.server.upstream_timeout)
            try:
                conn.connect()
                break
            except (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError) as e:
                conn.close()
                if attempt == 3:
                    raise UpstreamError("connecting", e) from e
                time.sleep(0.05 * 2 ** attempt)
        phase = "sending"
        try:
            conn.putrequest(self.command, up.base_path + self.path,
                            skip_host=True, skip_accept_encoding=True)
            drop = set(HOP_BY_HOP) | {"content-length", "expect"}
            for token in self.headers.get("Connection", "").split(","):
                drop.add(token.strip().lower())
            has_host = False
            for k, v in self.headers.items():
                if k.lower() in drop:
                    continue
                has_host |= k.lower() == "host"
                conn.putheader(k, v)
            if not has_host:
                conn.putheader("Host", up.netloc)
            if body or self.command in ("POST", "PUT", "PATCH") or "Content-Length" in self.headers \
                    or "Transfer-Encoding" in self.headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            phase = "waiting for the response"
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        except (OSError, http.client.HTTPException) as e:
            raise UpstreamError(phase, e) from e
        finally:
            conn.close()

    def relay(self, status, reason, headers, data):
        self.send_response_only(status, reason)
        drop = set(HOP_BY_HOP) | {"content-length"}
        for k, v in headers:
            if k.lower() == "connection":
                drop.update(t.strip().lower() for t in v.split(","))
        upstream_length = None
        for k, v in headers:
            if k.lower() == "content-length":
                upstream_length = v
            if k.lower() not in drop:
                self.send_header(k, v)
        no_body = self.command == "HEAD" or status in (204, 304) or 100 <= status < 200
        if self.command == "HEAD" and upstream_length is not None:
            self.send_header("Content-Length", upstream_length)
        elif not no_body:
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(data)
        self.wfile.flush()

    def note_identity(self, op, service, key_id, body):
        """Record who signed the request, and a web identity token's claims."""
        state = self.server.state
        state.note_caller(service, key_id)
        if op != "AssumeRoleWithWebIdentity":
            return
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        token = (form.get("WebIdentityToken") or [""])[0]
        try:
            payload = token.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (IndexError, ValueError):
            claims = {}
        state.note_web_identity({
            "roleArn": (form.get("RoleArn") or [""])[0],
            "iss": claims.get("iss"),
            "sub": claims.get("sub"),
            "aud": claims.get("aud"),
        })

    def proxy(self, body):
        state = self.server.state
        op, service, fmt, key_id = self.classify(body)
        state.bump(op, "requests")
        self.note_identity(op, service, key_id, body or b"")
        rule, kind = state.pick(op)
        fault = rule["fault"] if rule else None
        if os.environ.get("FAULTPROXY_TRACE"):
            log(f"trace t={time.monotonic():.3f} op={op} kind={kind}")
        if fault == "ratelimit":
            # IAM's answer time, throttled or not; a token: forwarded as is.
            time.sleep(rule["latencySeconds"])
            fault = "throttle" if kind == "throttle" else None

        if fault in ("throttle", "error5xx"):
            kind = "throttle" if fault == "throttle" else kind
            status, ctype, payload, rid = error_response(kind, fmt)
            state.bump(op, "throttled" if fault == "throttle" else "errors5xx")
            log(f"fault={fault} op={op} service={service} status={status} (not forwarded)")
            return self.send(status, ctype, payload, [("x-amzn-RequestId", rid)])

        if fault == "delay":
            state.bump(op, "delayed")
            log(f"fault=delay op={op} service={service} delay={rule['delaySeconds']}s")
            time.sleep(rule["delaySeconds"])

        try:
            state.bump(op, "forwarded")
            status, reason, headers, data = self.forward(body)
        except Exception as e:
            log(f"upstream error op={op}: {e}")
            self.close_connection = True
            if fault == "lost":
                state.bump(op, "lost")
            return self.send(502, "text/plain", f"faultproxy: upstream error: {e}\n".encode())

        if fault == "lost":
            del data  # may hold a secret (CreateAccessKey): dropped unread
            code, ctype, payload, rid = error_response("internal", fmt)
            state.bump(op, "lost")
            log(f"fault=lost op={op} service={service} upstream_status={status} "
                f"status={code} (forwarded, response discarded)")
            return self.send(code, ctype, payload, [("x-amzn-RequestId", rid)])

        self.relay(status, reason, headers, data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        log(f"error serving {client_address}: {e.__class__.__name__}: {e}")


class Upstream:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"upstream must be an http:// URL, got {url!r}")
        self.hostname = u.hostname
        self.port = u.port
        self.netloc = u.netloc
        self.base_path = u.path.rstrip("/")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free one)")
    p.add_argument("--upstream", required=True, help="http://HOST:PORT of moto")
    p.add_argument("--port-file", help="write the listening port here once listening")
    p.add_argument("--upstream-timeout", type=float, default=300.0,
                   help="seconds to wait for the upstream (default 300)")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit when the parent process dies (no orphans after a killed test)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)

    host, _, port = args.listen.rpartition(":")
    try:
        upstream = Upstream(args.upstream)
        port = int(port)
    except ValueError as e:
        p.error(str(e))
    server = Server((host or "127.0.0.1", port), Handler)
    server.state = State()
    server.upstream = upstream
    server.upstream_timeout = args.upstream_timeout
    server.verbose = args.verbose
    actual = server.server_address[1]

    if args.port_file:
        tmp = f"{args.port_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(f"{actual}\n")
        os.replace(tmp, args.port_file)

    if args.exit_with_parent:
        parent = os.getppid()

        def watch():
            while True:
                time.sleep(0.5)
                if os.getppid() != parent:
                    log("parent exited; stopping")
                    os._exit(0)

        threading.Thread(target=watch, daemon=True).start()

    log(f"listening on {server.server_address[0]}:{actual}, upstream {args.upstream}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
