#!/usr/bin/env python3
"""Self-test of hack/faultproxy.py: `python3 hack/faultproxy_test.py [-v]`.

FakeUpstreamTest runs the proxy (a subprocess) in front of a fake upstream (this file
run with --fake-upstream, also a subprocess) that records what reaches it.
RealMotoTest runs it in front of the test bed's moto_server and drives it with boto3
(the bed venv's python); it is skipped when no moto_server is found (set MOTO_SERVER
to its path, or build the bed with hack/testbed/build.sh).
"""

import glob
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
PROXY = os.path.join(HERE, "faultproxy.py")
SECRET = "UPSTREAM-SECRET-wJalrXUtnFEMI"


# --- the fake upstream (a subprocess running this file) ----------------------------

def fake_upstream(port_file):
    lock = threading.Lock()
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def answer(self, status, body, ctype="application/json", chunked=False, extra=()):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            for k, v in extra:
                self.send_header(k, v)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), 7):
                    part = body[i:i + 7]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            else:
                if status not in (204, 304):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and status not in (204, 304):
                    self.wfile.write(body)

        def any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n)
            path = urllib.parse.urlsplit(self.path).path
            if path == "/__upstream/requests":
                with lock:
                    return self.answer(200, json.dumps(seen).encode())
            if path == "/__upstream/reset":
                with lock:
                    seen.clear()
                return self.answer(200, b"{}")
            with lock:
                seen.append({
                    "method": self.command,
                    "path": self.path,
                    "headers": [[k, v] for k, v in self.headers.items()],
                    "body": body.decode("latin-1"),
                })
                count = len(seen)
            if path.startswith("/status/"):
                return self.answer(int(path.rsplit("/", 1)[1]), b"status body")
            reply = (f"<EchoResponse><Method>{self.command}</Method><Count>{count}</Count>"
                     f"<BodyLength>{len(body)}</BodyLength><Secret>{SECRET}</Secret>"
                     f"</EchoResponse>").encode()
            self.answer(200, reply, "text/xml", chunked=path == "/chunked",
                        extra=[("X-Upstream-Count", str(count)), ("Set-Cookie", "a=1"),
                               ("Set-Cookie", "b=2")])

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = any

    class S(http.server.ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128

    srv = S(("127.0.0.1", 0), H)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    srv.serve_forever()


# --- helpers --------------------------------------------------------------------------

def wait_port_file(path, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with open(path) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"no port file {path} within {timeout}s")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_proxy(upstream, tmp, name="proxy"):
    port_file = os.path.join(tmp, f"{name}.port")
    err = open(os.path.join(tmp, f"{name}.stderr"), "w+")
    proc = subprocess.Popen(
        [sys.executable, PROXY, "--listen", "127.0.0.1:0", "--upstream", upstream,
         "--port-file", port_file, "--exit-with-parent"],
        stdout=subprocess.DEVNULL, stderr=err)
    port = wait_port_file(port_file, proc)
    return proc, port, err


def stop(proc):
    if proc and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def call(port, method, path, body=b"", headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, str):
            body = body.encode()
        conn.request(method, path, body=body or None, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.getheaders(), r.read()
    finally:
        conn.close()


def aws_headers(service, target=None):
    h = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/"
                         f"{service}/aws4_request, SignedHeaders=host;x-amz-date, "
                         "Signature=0123456789abcdef",
        "X-Amz-Date": "20240101T000000Z",
    }
    if target:
        h["X-Amz-Target"] = target
        h["Content-Type"] = "application/x-amz-json-1.1"
    else:
        h["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    return h


def header(headers, name):
    vals = [v for k, v in headers if k.lower() == name.lower()]
    return vals[0] if vals else None


# --- tests against the fake upstream ----------------------------------------------------

class FakeUpstreamTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="faultproxy-test.")
        up_port_file = os.path.join(cls.tmp, "upstream.port")
        cls.upstream = subprocess.Popen([sys.executable, os.path.abspath(__file__),
                                         "--fake-upstream", up_port_file])
        cls.up_port = wait_port_file(up_port_file, cls.upstream)
        cls.proxy, cls.port, cls.stderr = start_proxy(f"http://127.0.0.1:{cls.up_port}", cls.tmp)

    @classmethod
    def tearDownClass(cls):
        stop(cls.proxy)
        stop(cls.upstream)
        cls.stderr.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.assertIsNone(self.proxy.poll(), "the proxy died")
        self.control("DELETE")
        self.control("POST", "/reset-counters")
        call(self.up_port, "POST", "/__upstream/reset")

    # helpers

    def control(self, method, sub="", doc=None, expect=200):
        body = json.dumps(doc).encode() if doc is not None else b""
        status, _, data = call(self.port, method, "/__faults" + sub, body,
                               {"Content-Type": "application/json"})
        self.assertEqual(status, expect, data)
        return json.loads(data)

    def rules(self, *rules, seed=None):
        doc = {"rules": list(rules)}
        if seed is not None:
            doc["seed"] = seed
        return self.control("PUT", doc=doc)

    def counters(self, op):
        return self.control("GET")["counters"].get(op, {})

    def seen(self):
        return json.loads(call(self.up_port, "GET", "/__upstream/requests")[2])

    def iam(self, action, extra="", service="iam"):
        return call(self.port, "POST", "/", f"Action={action}&Version=2010-05-08{extra}",
                    aws_headers(service))

    def ec2(self, action):
        return call(self.port, "POST", "/", f"Action={action}&Version=2016-11-15",
                    aws_headers("ec2"))

    # forwarding

    def test_forwards_form_post_and_relays_response(self):
        status, headers, body = self.iam("CreateUser", "&UserName=alice&Tags.member.1.Key=k%20x")
        self.assertEqual(status, 200)
        self.assertIn(b"<Count>1</Count>", body)
        self.assertEqual(header(headers, "Content-Type"), "text/xml")
        self.assertEqual(header(headers, "X-Upstream-Count"), "1")
        self.assertEqual(sorted(v for k, v in headers if k == "Set-Cookie"), ["a=1", "b=2"])
        [req] = self.seen()
        self.assertEqual(req["method"], "POST")
        self.assertEqual(req["path"], "/")
        self.assertEqual(req["body"],
                         "Action=CreateUser&Version=2010-05-08&UserName=alice&Tags.member.1.Key=k%20x")
        hdrs = {k.lower(): v for k, v in req["headers"]}
        self.assertTrue(hdrs["authorization"].startswith("AWS4-HMAC-SHA256 Credential="))
        self.assertEqual(hdrs["host"], f"127.0.0.1:{self.port}", "Host passes through (SigV4)")
        self.assertEqual(hdrs["content-length"], str(len(req["body"])))
        c = self.counters("CreateUser")
        self.assertEqual((c["requests"], c["forwarded"]), (1, 1))

    def test_forwards_methods_path_query_and_drops_hop_by_hop(self):
        status, _, body = call(self.port, "GET", "/some/path?Action=ListUsers&x=%2F1",
                               headers={"X-Custom": "yes", "Connection": "keep-alive, X-Drop-Me",
                                        "X-Drop-Me": "1", "Keep-Alive": "timeout=5",
                                        "Proxy-Authorization": "Basic Zm9v"})
        self.assertEqual(status, 200)
        self.assertIn(b"<Method>GET</Method>", body)
        for method in ("PUT", "DELETE", "PATCH"):
            self.assertEqual(call(self.port, method, "/r/1", b'{"a":1}')[0], 200)
        self.assertEqual(call(self.port, "HEAD", "/head")[0], 200)
        reqs = self.seen()
        self.assertEqual([r["method"] for r in reqs], ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
        self.assertEqual(reqs[0]["path"], "/some/path?Action=ListUsers&x=%2F1")
        hdrs = {k.lower(): v for k, v in reqs[0]["headers"]}
        self.assertEqual(hdrs.get("x-custom"), "yes")
        for h in ("x-drop-me", "keep-alive", "proxy-authorization"):
            self.assertNotIn(h, hdrs)
        self.assertEqual(reqs[1]["body"], '{"a":1}')
        self.assertEqual(self.counters("ListUsers")["requests"], 1, "Action from the query")
        self.assertEqual(self.counters("unknown")["requests"], 4)

    def test_upstream_statuses_relayed(self):
        status, _, body = call(self.port, "GET", "/status/404")
        self.assertEqual((status, body), (404, b"status body"))
        status, _, body = call(self.port, "DELETE", "/status/204")
        self.assertEqual((status, body), (204, b""))

    def test_keep_alive_many_requests_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            for i in range(5):
                conn.request("POST", "/", body=f"Action=GetUser&UserName=u{i}",
                             headers=aws_headers("iam"))
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertIn(f"<Count>{i + 1}</Count>".encode(), r.read())
                self.assertIsNone(r.getheader("Connection"))
        finally:
            conn.close()
        self.assertEqual(self.counters("GetUser")["forwarded"], 5)

    def test_chunked_request_body_and_chunked_response(self):
        body = b"Action=PutUserPolicy&PolicyDocument=" + b"x" * 5000
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            req = (b"POST /chunked HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   b"Content-Type: application/x-www-form-urlencoded\r\n"
                   b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
            for i in range(0, len(body), 1000):
                part = body[i:i + 1000]
                req += b"%x;ext=1\r\n%s\r\n" % (len(part), part)
            req += b"0\r\nX-Trailer: t\r\n\r\n"
            s.sendall(req)
            resp = b""
            while chunk := s.recv(65536):
                resp += chunk
        finally:
            s.close()
        head, _, payload = resp.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
        self.assertIn(b"Content-Length: %d" % len(payload), head)
        self.assertNotIn(b"chunked", head.lower())
        self.assertIn(b"<BodyLength>%d</BodyLength>" % len(body), payload)
        [req] = self.seen()
        self.assertEqual(req["body"].encode(), body)
        self.assertEqual(self.counters("PutUserPolicy")["forwarded"], 1)

    def test_concurrent_requests(self):
        results = []

        def one(i):
            results.append(self.iam("GetRole", f"&RoleName=r{i}")[0])

        threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 30)
        self.assertEqual(self.counters("GetRole")["forwarded"], 30)
        self.assertEqual(len(self.seen()), 30)

    # faults

    def test_throttle_iam_format_not_forwarded(self):
        self.rules({"operations": ["CreateAccessKey"], "fault": "throttle", "probability": 1.0})
        status, headers, body = self.iam("CreateAccessKey", "&UserName=bob")
        self.assertEqual(status, 400)
        self.assertTrue(header(headers, "Content-Type").startswith("text/xml"))
        self.assertRegex(body.decode(),
                         r"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
                         r"<Message>Rate exceeded</Message></Error><RequestId>[0-9a-f-]{36}"
                         r"</RequestId></ErrorResponse>")
        self.assertEqual(self.seen(), [], "a throttled call must not reach upstream")
        # Other operations are untouched.
        self.assertEqual(self.iam("CreateUser")[0], 200)
        c = self.counters("CreateAccessKey")
        self.assertEqual((c["requests"], c["forwarded"], c["throttled"]), (1, 0, 1))
        self.assertEqual(self.counters("CreateUser")["throttled"], 0)

    def test_throttle_ec2_format_from_credential_scope(self):
        self.rules({"operations": ["*"], "fault": "throttle"})
        status, headers, body = self.ec2("DescribeIamInstanceProfileAssociations")
        self.assertEqual(status, 503)
        self.assertEqual(header(headers, "Content-Type"), "text/xml")
        self.assertRegex(body.decode(),
                         r"<Response><Errors><Error><Code>RequestLimitExceeded</Code>"
                         r"<Message>Request limit exceeded.</Message></Error></Errors>"
                         r"<RequestID>[0-9a-f-]{36}</RequestID></Response>")
        # The service, not the operation's name, decides: an IAM Describe-less call ...
        status, _, body = self.iam("GetInstanceProfile")
        self.assertEqual(status, 400)
        self.assertIn(b"<ErrorResponse>", body)
        # ... and an STS call use the query format.
        status, _, body = self.iam("AssumeRole", service="sts")
        self.assertEqual(status, 400)
        self.assertIn(b"<Code>Throttling</Code>", body)
        # Without a SigV4 header, EC2-typical actions still get EC2's format.
        status, _, body = call(self.port, "POST", "/", "Action=DescribeInstances",
                               {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(status, 503)
        self.assertIn(b"RequestLimitExceeded", body)
        self.assertEqual(self.seen(), [])

    def test_json_protocol_operation_and_format(self):
        self.rules({"operations": ["GetCallerIdentity"], "fault": "throttle"})
        status, headers, body = call(self.port, "POST", "/", b"{}",
                                     aws_headers("sts", "AWSSecurityTokenServiceV20110615.GetCallerIdentity"))
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["__type"], "ThrottlingException")
        self.assertEqual(self.counters("GetCallerIdentity")["throttled"], 1)

    def test_error5xx_both_kinds_per_service(self):
        self.rules({"operations": ["ListUsers", "DescribeInstances"], "fault": "error5xx"}, seed=7)
        iam_seen, ec2_seen = {}, {}
        for _ in range(30):
            status, _, body = self.iam("ListUsers")
            iam_seen[status] = body.decode()
            status, _, body = self.ec2("DescribeInstances")
            ec2_seen[status] = body.decode()
        self.assertEqual(sorted(iam_seen), [500, 503])
        self.assertEqual(sorted(ec2_seen), [500, 503])
        self.assertIn("<Type>Receiver</Type><Code>InternalFailure</Code>", iam_seen[500])
        self.assertIn("<Code>ServiceUnavailable</Code>", iam_seen[503])
        self.assertIn("<Errors><Error><Code>InternalError</Code>", ec2_seen[500])
        self.assertIn("<Errors><Error><Code>Unavailable</Code>", ec2_seen[503])
        self.assertEqual(self.seen(), [])
        c = self.counters("ListUsers")
        self.assertEqual((c["requests"], c["errors5xx"], c["forwarded"]), (30, 30, 0))

    def test_lost_reaches_upstream_but_client_sees_500(self):
        self.rules({"operations": ["CreateAccessKey"], "fault": "lost", "count": 1})
        status, _, body = self.iam("CreateAccessKey", "&UserName=carol")
        self.assertEqual(status, 500)
        self.assertIn(b"<Code>InternalFailure</Code>", body)
        self.assertNotIn(SECRET.encode(), body)
        [req] = self.seen()
        self.assertIn("Action=CreateAccessKey", req["body"])
        c = self.counters("CreateAccessKey")
        self.assertEqual((c["requests"], c["forwarded"], c["lost"]), (1, 1, 1))
        # count=1: the retry goes through.
        status, _, body = self.iam("CreateAccessKey", "&UserName=carol")
        self.assertEqual(status, 200)
        self.assertIn(b"<Count>2</Count>", body)
        self.assertEqual(self.counters("CreateAccessKey")["lost"], 1)

    def test_lost_ec2_format(self):
        self.rules({"operations": ["AssociateIamInstanceProfile"], "fault": "lost"})
        status, _, body = self.ec2("AssociateIamInstanceProfile")
        self.assertEqual(status, 500)
        self.assertIn(b"<Response><Errors><Error><Code>InternalError</Code>", body)
        self.assertEqual(len(self.seen()), 1)

    def test_delay(self):
        self.rules({"operations": ["GetPolicy"], "fault": "delay", "delaySeconds": 1.0})
        t0 = time.monotonic()
        status, _, body = self.iam("GetPolicy")
        self.assertGreaterEqual(time.monotonic() - t0, 1.0)
        self.assertEqual(status, 200)
        self.assertIn(b"<EchoResponse>", body)
        c = self.counters("GetPolicy")
        self.assertEqual((c["delayed"], c["forwarded"]), (1, 1))
        # A client that gives up: the request still reaches upstream afterwards,
        # and the proxy survives the broken connection.
        with self.assertRaises((TimeoutError, socket.timeout)):
            call(self.port, "POST", "/", "Action=GetPolicy", aws_headers("iam"), timeout=0.3)
        time.sleep(1.2)
        self.assertEqual(len(self.seen()), 2)
        self.assertEqual(self.iam("ListRoles")[0], 200)

    def test_ratelimit_is_an_account_bucket_with_latency(self):
        # 2 tokens a second, 2 held: a quick burst of 6 gets 2 through and 4
        # throttled, each answer after the latency; a second later 2 pass again.
        self.rules({"operations": ["*"], "fault": "ratelimit", "ratePerSecond": 2,
                    "latencySeconds": 0.02})
        t0 = time.monotonic()
        statuses = [self.iam(op)[0] for op in ["GetRole", "GetPolicy"] * 3]
        self.assertGreaterEqual(time.monotonic() - t0, 6 * 0.02)
        self.assertEqual(statuses.count(200), 2, statuses)
        self.assertEqual(statuses.count(400), 4, statuses)
        self.assertEqual(self.control("GET")["rules"][0]["fired"], 4)
        self.assertEqual(self.counters("GetRole")["throttled"]
                         + self.counters("GetPolicy")["throttled"], 4)
        self.assertEqual(len(self.seen()), 2, "throttled requests are not forwarded")
        time.sleep(1.1)
        self.assertEqual([self.iam("GetUser")[0] for _ in range(3)], [200, 200, 400])
        for bad in ({"operations": ["*"], "fault": "ratelimit"},
                    {"operations": ["*"], "fault": "ratelimit", "ratePerSecond": 0},
                    {"operations": ["*"], "fault": "throttle", "latencySeconds": 1}):
            self.control("PUT", doc={"rules": [bad]}, expect=400)

    def test_probability_zero_and_one(self):
        self.rules({"operations": ["GetUser"], "fault": "throttle", "probability": 0.0},
                   {"operations": ["ListRoles"], "fault": "throttle", "probability": 1})
        for _ in range(20):
            self.assertEqual(self.iam("GetUser")[0], 200)
            self.assertEqual(self.iam("ListRoles")[0], 400)
        self.assertEqual(self.counters("GetUser")["throttled"], 0)
        self.assertEqual(self.counters("ListRoles")["throttled"], 20)

    def test_probability_fraction_seeded(self):
        def run():
            self.control("POST", "/reset-counters")
            self.rules({"operations": ["GetRole"], "fault": "throttle", "probability": 0.3}, seed=42)
            return [self.iam("GetRole")[0] for _ in range(200)]

        first, second = run(), run()
        self.assertEqual(first, second, "same seed, same faults")
        self.assertTrue(30 <= first.count(400) <= 90, first.count(400))
        self.assertEqual(self.counters("GetRole")["throttled"], first.count(400))

    def test_count_limits_fires_and_rules_fall_through(self):
        state = self.rules({"operations": ["Create*"], "fault": "throttle", "count": 2},
                           {"operations": ["*"], "fault": "error5xx", "count": 1})
        self.assertEqual(state["rules"][0]["fired"], 0)
        statuses = [self.iam("CreatePolicy")[0] for _ in range(5)]
        self.assertEqual(statuses[:2], [400, 400])
        self.assertIn(statuses[2], (500, 503), "the second rule once the first is used up")
        self.assertEqual(statuses[3:], [200, 200])
        rules = self.control("GET")["rules"]
        self.assertEqual([r["fired"] for r in rules], [2, 1])
        c = self.counters("CreatePolicy")
        self.assertEqual((c["requests"], c["throttled"], c["errors5xx"], c["forwarded"]), (5, 2, 1, 2))

    def test_control_api(self):
        self.rules({"operations": ["GetUser"], "fault": "throttle"})
        self.iam("GetUser")
        state = self.control("DELETE")
        self.assertEqual(state["rules"], [])
        self.assertEqual(state["counters"]["GetUser"]["throttled"], 1, "counters stay")
        self.assertEqual(self.iam("GetUser")[0], 200)
        self.assertEqual(self.control("POST", "/reset-counters")["counters"], {})
        # Bad rules are refused and leave the old ones in place.
        call(self.up_port, "POST", "/__upstream/reset")
        self.rules({"operations": ["GetUser"], "fault": "throttle"})
        for bad in ({"rules": [{"operations": ["X"], "fault": "explode"}]},
                    {"rules": [{"operations": [], "fault": "throttle"}]},
                    {"rules": [{"operations": ["X"], "fault": "throttle", "probability": 2}]},
                    {"rules": [{"operations": ["X"], "fault": "throttle", "propability": 1}]},
                    {"rules": [{"operations": ["X"], "fault": "delay"}]},
                    {"rules": [{"operations": ["X"], "fault": "throttle", "count": -1}]},
                    {"rules": "nope"}, {"seed": "x"}, [1]):
            self.control("PUT", doc=bad, expect=400)
        status, _, _ = call(self.port, "PUT", "/__faults", b"{not json")
        self.assertEqual(status, 400)
        self.assertEqual(len(self.control("GET")["rules"]), 1)
        self.control("POST", "", expect=405)
        self.control("GET", "/reset-counters", expect=405)
        self.control("GET", "/nope", expect=404)
        self.assertEqual(self.seen(), [], "control calls are never forwarded")

    def test_callers_and_web_identity_claims_recorded(self):
        import base64
        claims = {"iss": "https://kubernetes.default.svc", "aud": ["sts.amazonaws.com"],
                  "sub": "system:serviceaccount:ns:sa", "secretish": "not kept"}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        token = f"eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJl"
        self.iam("GetUser")
        self.iam("AssumeRoleWithWebIdentity",
                 "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fop"
                 f"&WebIdentityToken={token}", service="sts")
        state = self.control("GET")
        self.assertEqual(state["callers"], {"iam": {"AKIDEXAMPLE": 1}, "sts": {"AKIDEXAMPLE": 1}})
        self.assertEqual(state["webIdentities"], [{
            "roleArn": "arn:aws:iam::123456789012:role/op",
            "iss": claims["iss"], "sub": claims["sub"], "aud": claims["aud"]}])
        self.assertNotIn(token, json.dumps(state), "the token itself is never kept")
        self.assertEqual(self.control("POST", "/reset-counters")["callers"], {})

    def test_bad_requests_do_not_kill_the_proxy(self):
        def raw(data, read=True):
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            try:
                s.sendall(data)
                if not read:
                    return b""
                out = b""
                while chunk := s.recv(65536):
                    out += chunk
                return out
            except OSError:
                return b""
            finally:
                s.close()

        self.assertIn(b" 400 ", raw(b"GARBAGE\r\n\r\n"))
        self.assertIn(b" 400 ", raw(b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n"))
        self.assertIn(b" 400 ", raw(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
        raw(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nAction=Cre", read=False)
        raw(b"\x00\xff\xfe binary junk \r\n\r\n")
        raw(b"", read=False)
        raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nAction=\xff\xfe", read=True)
        time.sleep(0.2)
        self.assertIsNone(self.proxy.poll())
        self.assertEqual(self.iam("CreateUser")[0], 200)

    def test_upstream_down_gives_502(self):
        proc, port, err = start_proxy(f"http://127.0.0.1:{free_port()}", self.tmp, "down")
        try:
            status, _, _ = call(port, "POST", "/", "Action=CreateUser", aws_headers("iam"))
            self.assertEqual(status, 502)
            state = json.loads(call(port, "GET", "/__faults")[2])
            self.assertEqual(state["counters"]["CreateUser"]["forwarded"], 1)
            self.assertIsNone(proc.poll())
        finally:
            stop(proc)
            err.close()

    def test_log_lines_and_no_secrets(self):
        self.rules({"operations": ["CreateAccessKey"], "fault": "lost", "count": 1},
                   {"operations": ["UpdateAccessKey"], "fault": "throttle", "count": 1})
        self.iam("CreateAccessKey", "&UserName=dave&Password=REQUEST-SECRET-123")
        self.iam("UpdateAccessKey", "&UserName=dave")
        self.iam("CreateAccessKey", "&UserName=dave&Password=REQUEST-SECRET-123")
        time.sleep(0.2)
        self.stderr.seek(0)
        log = self.stderr.read()
        self.assertIn("fault=lost op=CreateAccessKey service=iam", log)
        self.assertIn("fault=throttle op=UpdateAccessKey service=iam status=400", log)
        self.assertNotIn(SECRET, log)
        self.assertNotIn("REQUEST-SECRET", log)


# --- tests against the real moto ----------------------------------------------------------

def find_moto():
    """(moto_server, the venv's python) or (None, why not)."""
    explicit = os.environ.get("MOTO_SERVER")
    candidates = [explicit] if explicit else sorted(
        glob.glob(os.path.expanduser("~/.cache/iamwright/testbed-*/venv/bin/moto_server")),
        key=os.path.getmtime, reverse=True)
    for server in candidates:
        python = os.path.join(os.path.dirname(server), "python")
        if os.access(server, os.X_OK) and os.access(python, os.X_OK):
            return server, python
    if explicit:
        return None, f"MOTO_SERVER={explicit} is not an executable next to its venv's python"
    return None, ("no moto_server: MOTO_SERVER is not set and none under "
                  "~/.cache/iamwright/testbed-*/venv/bin (hack/testbed/build.sh moto builds it)")


# Run by the bed venv's python (boto3 comes with moto); prints one JSON object.
BOTO_SCRIPT = textwrap.dedent(r"""
    import json, sys, urllib.request
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    proxy, moto = sys.argv[1], sys.argv[2]
    out = {}

    def control(method, doc=None, sub=""):
        req = urllib.request.Request(proxy + "/__faults" + sub, method=method,
                                     data=json.dumps(doc).encode() if doc is not None else None)
        with urllib.request.urlopen(req) as r:
            return json.loads(r.read())

    def client(service, url, attempts=1):
        return boto3.client(service, endpoint_url=url, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing",
                            config=Config(retries={"total_max_attempts": attempts,
                                                   "mode": "standard"}))

    def error(fn):
        try:
            fn()
            return None
        except ClientError as e:
            return {"code": e.response["Error"]["Code"],
                    "status": e.response["ResponseMetadata"]["HTTPStatusCode"]}

    iam, direct = client("iam", proxy), client("iam", moto)
    user = "fp-" + sys.argv[3]

    iam.create_user(UserName=user)
    out["user_via_moto"] = direct.get_user(UserName=user)["User"]["UserName"]
    out["caller"] = client("sts", proxy).get_caller_identity()["Account"]

    control("PUT", {"rules": [{"operations": ["ListAccessKeys"], "fault": "throttle"}]})
    out["throttle"] = error(lambda: iam.list_access_keys(UserName=user))
    # With the SDK's standard retries (3 attempts) two throttles are absorbed.
    control("PUT", {"rules": [{"operations": ["GetUser"], "fault": "throttle", "count": 2}]})
    out["retried"] = client("iam", proxy, 3).get_user(UserName=user)["User"]["UserName"]

    control("PUT", {"rules": [{"operations": ["CreateAccessKey"], "fault": "lost", "count": 1}]})
    out["lost"] = error(lambda: iam.create_access_key(UserName=user))
    out["keys_in_moto"] = len(direct.list_access_keys(UserName=user)["AccessKeyMetadata"])

    control("PUT", {"rules": [{"operations": ["Describe*"], "fault": "throttle"}]})
    ec2 = client("ec2", proxy)
    out["ec2_throttle"] = error(lambda: ec2.describe_iam_instance_profile_associations())
    control("PUT", {"rules": [{"operations": ["Describe*"], "fault": "error5xx"}], "seed": 1})
    out["ec2_5xx"] = [error(lambda: ec2.describe_instances()) for _ in range(8)]
    control("DELETE")
    out["ec2_ok"] = len(ec2.describe_instances()["Reservations"])
    out["counters"] = control("GET")["counters"]
    print(json.dumps(out))
""")


class RealMotoTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        server, cls.python = find_moto()
        if not server:
            print(f"\nRealMotoTest skipped: {cls.python}", file=sys.stderr)
            raise unittest.SkipTest(cls.python)
        cls.tmp = tempfile.mkdtemp(prefix="faultproxy-moto.")
        cls.moto_port = free_port()
        cls.moto_log = open(os.path.join(cls.tmp, "moto.log"), "w")
        cls.moto = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(cls.moto_port)],
                                    stdout=cls.moto_log, stderr=subprocess.STDOUT)
        cls.moto_url = f"http://127.0.0.1:{cls.moto_port}"
        deadline = time.time() + 60
        while True:
            try:
                if call(cls.moto_port, "GET", "/moto-api/", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if cls.moto.poll() is not None or time.time() > deadline:
                stop(cls.moto)
                raise RuntimeError("moto_server did not start")
            time.sleep(0.2)
        cls.proxy, cls.port, cls.stderr = start_proxy(cls.moto_url, cls.tmp)

    @classmethod
    def tearDownClass(cls):
        stop(cls.proxy)
        stop(cls.moto)
        cls.stderr.close()
        cls.moto_log.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_boto3_through_the_proxy(self):
        r = subprocess.run([self.python, "-c", BOTO_SCRIPT, f"http://127.0.0.1:{self.port}",
                            self.moto_url, str(os.getpid())],
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        c = out["counters"]
        self.assertEqual(out["user_via_moto"], f"fp-{os.getpid()}")
        self.assertEqual(out["caller"], "123456789012")
        self.assertEqual(c["CreateUser"]["forwarded"], 1)

        self.assertEqual(out["throttle"], {"code": "Throttling", "status": 400})
        self.assertEqual((c["ListAccessKeys"]["requests"], c["ListAccessKeys"]["forwarded"]),
                         (1, 0), "retries disabled: one attempt")
        self.assertEqual(out["retried"], f"fp-{os.getpid()}")
        self.assertEqual((c["GetUser"]["requests"], c["GetUser"]["throttled"]), (3, 2))

        self.assertEqual(out["lost"], {"code": "InternalFailure", "status": 500})
        self.assertEqual(out["keys_in_moto"], 1, "the lost CreateAccessKey happened in moto")
        self.assertEqual((c["CreateAccessKey"]["forwarded"], c["CreateAccessKey"]["lost"]), (1, 1))

        self.assertEqual(out["ec2_throttle"], {"code": "RequestLimitExceeded", "status": 503})
        self.assertEqual({(e["code"], e["status"]) for e in out["ec2_5xx"]},
                         {("InternalError", 500), ("Unavailable", 503)})
        self.assertEqual(out["ec2_ok"], 0)

        self.stderr.seek(0)
        log = self.stderr.read()
        self.assertIn("fault=lost op=CreateAccessKey service=iam upstream_status=200", log)
        self.assertNotIn("SecretAccessKey", log)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--fake-upstream":
        fake_upstream(sys.argv[2])
    else:
        unittest.main()
