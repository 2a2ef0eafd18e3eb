#!/usr/bin/env python3
"""The benchmark: N IamPolicy + N IamRole pairs (each role with a policyRef) on the
test bed, beside the floor measured in the same run on the same moto.

Run through hack/bench.sh, which brings the bed up and builds the operator; this
script expects the bed's env (KUBECONFIG, AWS_ENDPOINT_URL, IAMWRIGHT_TESTBED_DIR)
and runs with the bed's Python (it uses boto3 from moto's venv for the floor).

With --bindings B, also B IamRoles and B InstanceProfileBindings, binding j selecting
by tag the instances of group j among --instances EC2 instances launched in moto
first; it then prints the EC2 reads per --instance-resync-interval tick in steady state
(the same whatever B, when the bindings share one view per region per tick).

With --iam-like RATE,LATENCY (e.g. 20,0.1), the operator reaches moto through
hack/faultproxy.py acting as IAM does: every call answered after LATENCY seconds, and
one account-wide token bucket of RATE calls a second answering `Throttling` above it.
The floor is then a perfectly paced client: the 3 writes per pair at RATE a second
(3 N / RATE + LATENCY), not measured; the run prints the throttling the operator met,
how much its pacer absorbed, and the AwsThrottled transitions objects showed.

Prints: time from the first create to all Ready, the floor (the 3 writes per pair —
CreatePolicy, CreateRole, AttachRolePolicy — sent straight to moto by 4 threads) and
the ratio; AWS calls per pair by operation; Kubernetes writes per object; AWS reads
and writes per object per resync in steady state; the operator's peak RSS; the CPU
seconds of moto, kube-apiserver and the operator.

With BENCH_TRACE set it also prints the monotonic times of the first apply, the last
apply and all Ready, to lay beside the IAM-like proxy's FAULTPROXY_TRACE log.
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import boto3
import botocore.parsers

DOC = {"Version": "2012-10-17",
       "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
TRUST = {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                        "Action": "sts:AssumeRole"}]}
READ = re.compile(r"^(Get|List|Describe)")
APPLIERS = {"direct": "4 API clients", "kubectl": "4 kubectl apply processes"}


def kubectl(*args, stdin=None):
    return subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True, check=True).stdout


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bed_pid(name):
    with open(os.path.join(os.environ["IAMWRIGHT_TESTBED_DIR"], f"{name}.pid")) as f:
        return int(f.read().strip())


def aws_calls(metrics_url):
    """{operation: count} from iamwright_aws_requests_total."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("iamwright_aws_requests_total{"):
            op = re.search(r'operation="([^"]+)"', line).group(1)
            out[op] = out.get(op, 0) + float(line.rsplit(" ", 1)[1])
    return out


def kube_writes():
    """{resource: count} of write requests the API server served (all clients)."""
    text = kubectl("get", "--raw", "/metrics")
    out = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        verb = re.search(r'verb="([^"]+)"', line).group(1)
        if verb not in ("POST", "PUT", "PATCH", "APPLY", "DELETE"):
            continue
        resource = re.search(r'resource="([^"]*)"', line).group(1)
        sub = re.search(r'subresource="([^"]*)"', line)
        key = resource + ("/" + sub.group(1) if sub and sub.group(1) else "")
        out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def event_reasons(ns):
    """{(type, reason): count} of the events in `ns` (read once, after the measures)."""
    out = {}
    listed = json.loads(kubectl("get", "events.events.k8s.io", "-n", ns, "-o", "json"))
    for e in listed["items"]:
        key = (e.get("type", ""), e.get("reason", ""))
        out[key] = out.get(key, 0) + 1
    return out


def heartbeats(writes):
    """Take out of `writes` the periodic writes no object causes: lease renewals (leader
    election, the control plane's own) and the API server's refresh of the `kubernetes`
    Endpoints (the operator writes no Endpoints). Returns how many there were."""
    return sum(writes.pop(k, 0) for k in ("leases", "endpoints", "endpointslices"))


def delta(after, before):
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)
            if after.get(k, 0) - before.get(k, 0)}


def start_iam_like(rate, latency, bed):
    """hack/faultproxy.py in front of moto with IAM's shape; returns (process, URL)."""
    port_file = os.path.join(bed, "logs", f"faultproxy-bench-{random.getrandbits(32):08x}.port")
    log = open(port_file + ".log", "w")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "faultproxy.py"),
         "--listen", "127.0.0.1:0", "--upstream", os.environ["AWS_ENDPOINT_URL"],
         "--port-file", port_file], stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(100):
        if os.path.exists(port_file):
            break
        time.sleep(0.1)
    url = f"http://127.0.0.1:{open(port_file).read().strip()}"
    rules = {"rules": [{"operations": ["*"], "fault": "ratelimit", "ratePerSecond": rate,
                        "latencySeconds": latency}]}
    req = urllib.request.Request(url + "/__faults", data=json.dumps(rules).encode(), method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=10).read()
    return proc, url


def proxy_throttled(url):
    """Throttling answers the IAM-like proxy gave, all operations."""
    state = json.loads(urllib.request.urlopen(url + "/__faults", timeout=10).read())
    return sum(c.get("throttled", 0) for c in state["counters"].values())


def pacer_metrics(metrics_url):
    """(throttles absorbed, current paced rate) from the operator's metrics."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    absorbed = rate = 0.0
    for line in text.splitlines():
        if line.startswith("iamwright_aws_throttles_absorbed_total{"):
            absorbed += float(line.rsplit(" ", 1)[1])
        if line.startswith("iamwright_aws_pace_requests_per_second{"):
            rate = max(rate, float(line.rsplit(" ", 1)[1]))
    return absorbed, rate


def floor(n, run):
    iam = boto3.client("iam")
    doc, trust = json.dumps(DOC), json.dumps(TRUST)

    def again(call, **kw):
        # moto answers a write racing another on its dictionaries with a 500 now and then
        # (botocore does not retry an unparsable error); the operator's SDK retries them.
        for attempt in range(5):
            try:
                return call(**kw)
            except botocore.parsers.ResponseParserError:
                if attempt == 4:
                    raise

    def pair(i):
        arn = again(iam.create_policy, PolicyName=f"floor-{run}-p{i}", PolicyDocument=doc)["Policy"]["Arn"]
        again(iam.create_role, RoleName=f"floor-{run}-r{i}", AssumeRolePolicyDocument=trust)
        again(iam.attach_role_policy, RoleName=f"floor-{run}-r{i}", PolicyArn=arn)

    def unpair(i):
        arn = f"arn:aws:iam::{account}:policy/floor-{run}-p{i}"
        again(iam.detach_role_policy, RoleName=f"floor-{run}-r{i}", PolicyArn=arn)
        again(iam.delete_role, RoleName=f"floor-{run}-r{i}")
        again(iam.delete_policy, PolicyArn=arn)

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(pair, range(n)))
    elapsed = time.monotonic() - t0
    # Gone again before the operator's run: moto finds a role or a policy by scanning
    # all of them, so writes into an account already holding the floor's N pairs would
    # cost the operator more than they cost the floor.
    account = boto3.client("sts").get_caller_identity()["Account"]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(unpair, range(n)))
    return elapsed


class ReadyWatch:
    """Counts Ready objects (Ready=True for their generation) from watch streams straight
    from the API server: polling a full list every half second would itself load the
    API server the operator is being measured against."""

    def __init__(self, ns, kinds=("iampolicies", "iamroles")):
        self.api = Api()
        self.ready = set()
        self.cond = threading.Condition()
        for kind in kinds:
            threading.Thread(target=self.watch, args=(ns, kind), daemon=True).start()

    def watch(self, ns, kind):
        path = f"/apis/iamwright.dev/v1alpha1/namespaces/{ns}/{kind}?watch=1"
        while True:
            try:
                conn = self.api.connect(timeout=3600)
                conn.request("GET", path, headers=self.api.headers())
                for line in conn.getresponse():
                    self.update(kind, json.loads(line))
            except Exception:
                time.sleep(0.2)  # the watch ended: watch again

    def update(self, kind, event):
        o = event.get("object") or {}
        meta, st = o.get("metadata") or {}, o.get("status") or {}
        key = (kind, meta.get("name"))
        ok = event.get("type") != "DELETED" and st.get("observedGeneration") == meta.get("generation") \
            and any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in st.get("conditions", []))
        with self.cond:
            (self.ready.add if ok else self.ready.discard)(key)
            self.cond.notify_all()

    def wait_for(self, count, deadline):
        with self.cond:
            while len(self.ready) < count:
                if time.monotonic() > deadline:
                    return False
                self.cond.wait(timeout=1)
        return True

    def close(self):
        pass


class Api:
    """The bed's API server as the admin kubeconfig names it, for plain HTTPS clients."""

    def __init__(self):
        def view(path):
            return kubectl("config", "view", "--raw", "--minify", "-o", f"jsonpath={{{path}}}")
        server = urllib.parse.urlsplit(view(".clusters[0].cluster.server"))
        self.host, self.port = server.hostname, server.port
        self.token = view(".users[0].user.token")
        self.tls = ssl.create_default_context(
            cadata=base64.b64decode(view(".clusters[0].cluster.certificate-authority-data")).decode())

    def connect(self, timeout=60):
        return http.client.HTTPSConnection(self.host, self.port, context=self.tls, timeout=timeout)

    def headers(self, **extra):
        return {"Authorization": f"Bearer {self.token}", **extra}


class Applier:
    """Server-side applies straight to the API server, one keep-alive connection per
    worker, as Argo CD and Flux apply (`--applier direct`). Measured on 2 cores, this
    floods the API server sooner than 4 `kubectl apply` processes do (the default), and
    the whole converge came out slower, not faster: the cores are shared."""

    def __init__(self):
        self.api = Api()

    def apply(self, ns, docs, workers):
        local = threading.local()

        def one(doc):
            if not hasattr(local, "conn"):
                local.conn = self.api.connect()
            plural = {"IamPolicy": "iampolicies", "IamRole": "iamroles"}[doc["kind"]]
            path = (f"/apis/iamwright.dev/v1alpha1/namespaces/{ns}/{plural}/"
                    f"{doc['metadata']['name']}?fieldManager=bench&force=true")
            local.conn.request("PATCH", path, body=json.dumps(doc), headers=self.api.headers(
                **{"Content-Type": "application/apply-patch+yaml"}))
            resp = local.conn.getresponse()
            body = resp.read()
            if resp.status >= 300:
                sys.exit(f"bench: apply of {doc['metadata']['name']} failed: {resp.status} {body[:300]}")

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            list(pool.map(one, docs))


def apply_all(ns, docs, applier, workers=4):
    """Applies the objects by `workers` clients at once, as the floor sends its AWS
    writes by 4 threads; returns when every object is accepted."""
    if applier == "direct":
        return Applier().apply(ns, docs, workers)
    chunks = [docs[i::workers] for i in range(workers)]
    files = []
    for chunk in chunks:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("\n---\n".join(json.dumps(d) for d in chunk))
            files.append(f.name)
    procs = [subprocess.Popen(["kubectl", "apply", "--server-side", "-n", ns, "-f", name],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for name in files]
    for proc in procs:
        if proc.wait() != 0:
            sys.exit(f"bench: kubectl apply failed: {proc.stderr.read().decode()}")


def binding_manifests(b):
    """B roles and B bindings: binding j holds role br<j> and selects group g<j>."""
    docs = []
    for j in range(b):
        docs.append({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
                     "metadata": {"name": f"br{j}"}, "spec": {"assumeRolePolicy": TRUST}})
        docs.append({"apiVersion": "iamwright.dev/v1alpha1", "kind": "InstanceProfileBinding",
                     "metadata": {"name": f"b{j}"},
                     "spec": {"roleRef": {"name": f"br{j}"},
                              "instanceSelector": {"tags": {"bench-group": f"g{j}"}}}})
    return docs


def launch_instances(count, groups):
    """`count` instances in moto, spread over `groups` tag groups (bench-group=g<i>)."""
    ec2 = boto3.client("ec2")
    for start in range(0, count, 100):
        batch = range(start, min(count, start + 100))
        for i in batch:
            ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                              TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                  {"Key": "bench-group", "Value": f"g{i % groups}"}]}])


EC2_READS = ("DescribeInstances", "DescribeIamInstanceProfileAssociations")


def manifests(n, shards):
    docs = []
    for i in range(n):
        # A pair lives in one shard (label shard=s<i mod shards>).
        labels = {"shard": f"s{i % shards}"} if shards > 1 else {}
        docs.append({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamPolicy",
                     "metadata": {"name": f"p{i}", "labels": labels}, "spec": {"document": DOC}})
        docs.append({"apiVersion": "iamwright.dev/v1alpha1", "kind": "IamRole",
                     "metadata": {"name": f"r{i}", "labels": labels},
                     "spec": {"assumeRolePolicy": TRUST, "policyRefs": [{"name": f"p{i}"}]}})
    return docs


def floors_of(n, ns, run, applier):
    """The AWS floor (the better of two runs) and the API server's own time and CPU to
    accept the same objects."""
    print(f"== floor: {n} pairs straight to moto, 4 threads, twice", flush=True)
    # The better of two runs: the first on a fresh bed varies by a factor of up to two
    # (moto and the API server still settling), and a slow floor flatters the ratio.
    floors = [floor(n, f"{run}-{i}") for i in range(2)]
    floor_s = min(floors)
    # What the API server alone takes to accept the objects (no operator watches this
    # namespace): the Kubernetes side's own floor, beside the AWS one.
    kubectl("create", "namespace", f"{ns}-floor")
    bed_procs = {"kube-apiserver": bed_pid("kube-apiserver"), "etcd": bed_pid("etcd")}
    cpu_before = {k: cpu_seconds(v) for k, v in bed_procs.items()}
    t0 = time.monotonic()
    apply_all(f"{ns}-floor", manifests(n, 1), applier)
    kube_floor_s = time.monotonic() - t0
    kube_floor_cpu = {k: cpu_seconds(v) - cpu_before[k] for k, v in bed_procs.items()}
    kubectl("delete", "iampolicies,iamroles", "--all", "-n", f"{ns}-floor", "--wait=false")
    kubectl("delete", "namespace", f"{ns}-floor", "--wait=false")
    print(f"   floor {floor_s:.1f} s; the API server alone accepts the objects in {kube_floor_s:.1f} s",
          flush=True)
    return floors, floor_s, kube_floor_s, kube_floor_cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("n", type=int, nargs="?", default=200)
    p.add_argument("--binary", required=True)
    p.add_argument("--resync", type=int, default=30, help="resync interval, seconds")
    p.add_argument("--steady-resyncs", type=int, default=2)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--shards", type=int, default=1,
                   help="operator processes, each with --object-selector shard=s<i>")
    p.add_argument("--applier", choices=("kubectl", "direct"), default="kubectl",
                   help="who applies the objects: 4 kubectl processes, or 4 API clients")
    p.add_argument("--bindings", type=int, default=0,
                   help="also B roles and B InstanceProfileBindings over tagged instances")
    p.add_argument("--instances", type=int, default=500, help="EC2 instances for --bindings")
    p.add_argument("--instance-resync", type=int, default=30,
                   help="--instance-resync-interval, seconds")
    p.add_argument("--iam-like", default=None, metavar="RATE,LATENCY",
                   help="through the fault proxy as IAM: RATE calls/s per account, LATENCY s per call")
    a = p.parse_args()
    iam_like = None
    if a.iam_like:
        rate, latency = (float(x) for x in a.iam_like.split(","))
        iam_like = (rate, latency)
        if a.shards > 1 or a.bindings:
            p.error("--iam-like measures pairs through one operator")
    if a.bindings and (a.n or a.shards > 1):
        p.error("--bindings measures bindings alone: give N=0 and one shard")
    n, run = a.n, f"{random.getrandbits(32):08x}"
    ns = f"bench-{run}"
    bed = os.environ["IAMWRIGHT_TESTBED_DIR"]

    proxy = None
    if iam_like:
        rate, latency = iam_like
        floor_s = 3 * n / rate + latency
        floors, kube_floor_s, kube_floor_cpu = [floor_s], 0.0, {}
        proxy, proxy_url = start_iam_like(rate, latency, bed)
        print(f"== IAM-like: {rate:g} calls/s per account, {latency * 1000:.0f} ms per call "
              f"(fault proxy {proxy_url}); floor {floor_s:.1f} s, a perfectly paced client", flush=True)
    elif n:
        floors, floor_s, kube_floor_s, kube_floor_cpu = floors_of(n, ns, run, a.applier)

    kubectl("create", "namespace", ns)
    if a.bindings:
        print(f"== {a.instances} EC2 instances in {a.bindings} tag groups", flush=True)
        launch_instances(a.instances, a.bindings)
    ops = []
    for shard in range(a.shards):
        mport, hport = free_port(), free_port()
        log = open(os.path.join(bed, "logs", f"operator-{ns}-s{shard}.log"), "w")
        extra = ["--object-selector", f"shard=s{shard}"] if a.shards > 1 else []
        proc = subprocess.Popen(
            [a.binary, "run", "--cluster-name", "bench", "--watch-namespace", ns,
             "--resync-interval", f"{a.resync}s", "--instance-resync-interval", f"{a.instance_resync}s",
             "--metrics-bind-address", f"127.0.0.1:{mport}",
             "--health-probe-bind-address", f"127.0.0.1:{hport}", *extra],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "warn",
                                         "KUBECONFIG": os.environ["IAMWRIGHT_OPERATOR_KUBECONFIG"],
                                         **({"AWS_ENDPOINT_URL": proxy_url} if proxy else {})})
        ops.append((proc, f"http://127.0.0.1:{mport}/metrics", hport))

    def all_calls():
        """Per shard {operation: count}."""
        return [aws_calls(m) for _, m, _ in ops]

    try:
        for _, _, hport in ops:
            for _ in range(300):
                try:
                    if urllib.request.urlopen(f"http://127.0.0.1:{hport}/readyz", timeout=2).status == 200:
                        break
                except Exception:
                    time.sleep(0.2)
        procs = {"moto": bed_pid("moto"), "kube-apiserver": bed_pid("kube-apiserver"),
                 "etcd": bed_pid("etcd")}
        for shard, (proc, _, _) in enumerate(ops):
            procs["operator" if a.shards == 1 else f"operator s{shard}"] = proc.pid
        cpu0 = {k: cpu_seconds(v) for k, v in procs.items()}
        aws0, kube0 = all_calls(), kube_writes()

        print(f"== converge: {n} pairs through {a.shards} operator process(es)", flush=True)
        kinds = ("iampolicies", "iamroles") + (("instanceprofilebindings",) if a.bindings else ())
        watch = ReadyWatch(ns, kinds)
        docs = manifests(n, a.shards) + binding_manifests(a.bindings)
        t0 = time.monotonic()
        apply_all(ns, docs, a.applier)
        applied_s = time.monotonic() - t0
        ok = watch.wait_for(2 * n + 2 * a.bindings, t0 + a.timeout)
        watch.close()
        if not ok:
            sys.exit(f"bench: not all Ready after {a.timeout}s")
        converge_s = time.monotonic() - t0
        if os.environ.get("BENCH_TRACE"):
            print(f"trace t0={t0:.3f} applied={t0 + applied_s:.3f} ready={t0 + converge_s:.3f}", flush=True)
        cpu1 = {k: cpu_seconds(v) for k, v in procs.items()}
        aws1, kube1 = all_calls(), kube_writes()

        print(f"== steady state: {a.steady_resyncs} resyncs of {a.resync}s", flush=True)
        time.sleep(3)
        aws2, kube2 = all_calls(), kube_writes()
        t2 = time.monotonic()
        time.sleep(a.resync * a.steady_resyncs)
        aws3, kube3 = all_calls(), kube_writes()
        steady_s = time.monotonic() - t2
        rss = max(peak_rss_mib(proc.pid) for proc, _, _ in ops)
        reasons = event_reasons(ns)
        if proxy:
            absorbed, paced = pacer_metrics(ops[0][1])
            throttled = proxy_throttled(proxy_url)
    finally:
        for proc, _, _ in ops:
            proc.terminate()
        for proc, _, _ in ops:
            proc.wait(timeout=30)
        if proxy:
            proxy.terminate()
            proxy.wait(timeout=30)

    def total(per_shard):
        out = {}
        for calls in per_shard:
            for k, v in calls.items():
                out[k] = out.get(k, 0) + v
        return out

    shard_rows = []
    if a.shards > 1:
        for shard in range(a.shards):
            pairs = len([i for i in range(n) if i % a.shards == shard])
            c = delta(aws1[shard], aws0[shard])
            st = delta(aws3[shard], aws2[shard])
            c_reads = sum(v for k, v in c.items() if READ.match(k))
            c_writes = sum(v for k, v in c.items() if not READ.match(k))
            s_r = sum(v for k, v in st.items() if READ.match(k))
            shard_rows.append((shard, pairs, c_reads / pairs, c_writes / pairs,
                               s_r / max(1, 2 * pairs * a.steady_resyncs)))
    aws0, aws1, aws2, aws3 = total(aws0), total(aws1), total(aws2), total(aws3)
    conv = delta(aws1, aws0)
    reads = sum(v for k, v in conv.items() if READ.match(k))
    writes = sum(v for k, v in conv.items() if not READ.match(k))
    # The benchmark's own applies (one per object) are not the operator's writes.
    kw = delta(kube1, kube0)
    kube_leases = heartbeats(kw)
    kube_total = sum(kw.values()) - 2 * n
    steady = delta(aws3, aws2)
    s_reads = sum(v for k, v in steady.items() if READ.match(k))
    s_writes = sum(v for k, v in steady.items() if not READ.match(k))
    s_kube_by = delta(kube3, kube2)
    s_leases = heartbeats(s_kube_by)
    s_kube = sum(s_kube_by.values())
    per_resync = max(1, 2 * n * a.steady_resyncs)  # --steady-resyncs 0: no steady phase

    def print_pairs():
        print(f"pairs                          {n}" + (f" in {a.shards} shards" if a.shards > 1 else ""))
        print(f"all applied after              {applied_s:.1f} s ({APPLIERS[a.applier]})")
        print(f"all Ready after                {converge_s:.1f} s")
        if iam_like:
            print(f"floor (paced at {iam_like[0]:g}/s)         {floor_s:.1f} s (3 writes per pair, one answer's latency)")
            print(f"ratio                          {converge_s / floor_s:.2f}x")
            print(f"AwsThrottled transitions       {throttled_transitions_n}")
            print(f"throttling answers             {throttled} (absorbed by the pacer: {absorbed:.0f}; "
                  f"its rate at the end {paced:.1f}/s)")
        else:
            print(f"floor (same moto, 4 threads)   {floor_s:.1f} s (best of {' and '.join(f'{f:.1f}' for f in floors)})")
            print(f"ratio                          {converge_s / floor_s:.2f}x")
            print(f"API server alone accepts them  {kube_floor_s:.1f} s (no operator; {APPLIERS[a.applier]}; "
                  + ", ".join(f"{k} {v:.1f}" for k, v in kube_floor_cpu.items()) + " CPU s)")
        print(f"AWS calls per pair             {(reads + writes) / n:.2f} ({reads / n:.2f} reads, {writes / n:.2f} writes)")
        for k in sorted(conv, key=lambda k: -conv[k]):
            print(f"  {k:28} {conv[k] / n:.2f}")
        print(f"Kubernetes writes per object   {kube_total / (2 * n):.2f} (and {kube_leases:.0f} heartbeats)")
        for k in sorted(kw, key=lambda k: -kw[k]):
            if kw[k] / (2 * n) >= 0.005:  # not the floor namespace's clean-up (0.00 each)
                print(f"  {k:28} {kw[k] / (2 * n):.2f}")
        print("events by reason               " + ", ".join(
            f"{reason} {count}" + (f" ({kind})" if kind != "Normal" else "")
            for (kind, reason), count in sorted(reasons.items(), key=lambda kv: -kv[1])))
        print(f"steady state per object per resync: {s_reads / per_resync:.2f} AWS reads, "
              f"{s_writes / per_resync:.2f} AWS writes, {s_kube / per_resync:.2f} Kubernetes writes "
              f"(and {s_leases:.0f} heartbeats)")
        for k in sorted(s_kube_by, key=lambda k: -s_kube_by[k]):
            print(f"  Kubernetes {k:17} {s_kube_by[k]:.0f}")
        for k in sorted(steady, key=lambda k: -steady[k]):
            print(f"  {k:28} {steady[k] / per_resync:.2f}")
        for shard, pairs, c_reads, c_writes, s_reads_obj in shard_rows:
            print(f"shard s{shard}: {pairs} pairs; per pair {c_reads:.2f} reads, {c_writes:.2f} writes "
                  f"converging; steady {s_reads_obj:.2f} AWS reads per object per resync")

    throttled_transitions_n = reasons.get(("Warning", "AwsThrottled"), 0)
    print()
    if n:
        print_pairs()
    if a.bindings:
        ticks = steady_s / a.instance_resync
        ec2 = {k: steady.get(k, 0) for k in EC2_READS}
        print(f"bindings                       {a.bindings} over {a.instances} instances "
              f"({a.bindings} tag groups), all Ready after {converge_s:.1f} s")
        print(f"AWS calls converging           " + ", ".join(
            f"{k} {v:.0f}" for k, v in sorted(conv.items(), key=lambda kv: -kv[1])))
        print(f"EC2 reads per instance-resync tick (steady, {ticks:.1f} ticks of {a.instance_resync}s): "
              f"{sum(ec2.values()) / ticks:.2f} (" + ", ".join(f"{k} {v / ticks:.2f}" for k, v in ec2.items()) + ")")
        print(f"steady state: {s_writes:.0f} AWS writes, {s_kube:.0f} Kubernetes writes; AWS calls per tick: "
              + ", ".join(f"{k} {v / ticks:.2f}" for k, v in sorted(steady.items(), key=lambda kv: -kv[1])))
    print(f"operator peak RSS              {rss:.1f} MiB" + (" (the largest shard)" if a.shards > 1 else ""))
    print("CPU seconds while converging   " + ", ".join(f"{k} {cpu1[k] - cpu0[k]:.1f}" for k in procs))
    kubectl("delete", "namespace", ns, "--wait=false")


if __name__ == "__main__":
    main()
