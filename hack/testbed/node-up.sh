#!/usr/bin/env bash
# Starts the bed's node: containerd (+ runc, CNI bridge/host-local/loopback), kubelet,
# kube-proxy (iptables) and kube-scheduler, so that the chart's pods really run. Called
# by up.sh --node after the control plane is up; not meant to be run alone.
#
# Environment (from up.sh): dir bin cache host_ip timeout_s, and the functions start,
# wait_for, fail, log are inherited by sourcing.
# shellcheck disable=SC2154
node="$dir/node"
rm -rf "$node"
mkdir -p "$node/containerd" "$node/cni/net.d" "$node/cni/ipam" "$node/kubelet" "$node/pki"
sock="$node/containerd.sock"

# Kernel settings a node needs: routing between the pod bridge and the host, and
# bridged traffic through iptables (kube-proxy's service rules).
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || log "no bridge netfilter (pod-to-service via the bridge may not work)"

cat >"$node/containerd.toml" <<TOML
version = 2
root = "$node/containerd/root"
state = "$node/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$node/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:iamwright"
  # The bed may itself run in a container that may not lower oom_score_adj (the
  # kubelet asks -998 for sandboxes): clamp to containerd's own, as rootless setups do.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node/cni/net.d"
TOML

# One bridge, addresses from host-local, masquerade to the outside; containerd adds the
# loopback interface itself.
cat >"$node/cni/net.d/10-iamwright.conflist" <<JSON
{
  "cniVersion": "0.4.0",
  "name": "iamwright",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "iamwright0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$node/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON

PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH" start containerd containerd --config "$node/containerd.toml"
ctr=(ctr --address "$sock" --namespace k8s.io)
wait_for containerd "serving" "${ctr[@]}" version
# The pod sandbox image; every bed's containerd starts empty, imports take a second.
"${ctr[@]}" images import --all-platforms "$cache/images/pause.tar" >/dev/null
"${ctr[@]}" images label localhost/pause:iamwright io.cri-containerd.pinned=pinned >/dev/null
for img in ${IAMWRIGHT_TESTBED_IMAGES:-}; do
  "${ctr[@]}" images import --all-platforms "$img" >/dev/null
  log "imported $(basename "$img")"
done

read -r kubelet_port kubelet_healthz sched_port proxy_healthz proxy_metrics < <(python3 - <<'PY'
import socket
ss = []
for _ in range(5):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
PY
)

# Anonymous, AlwaysAllow: the kubelet's own API is only for `kubectl logs/exec` on a
# throw-away bed. Eviction thresholds low and image GC off, so a busy CI disk never
# evicts the pods under test.
cat >"$node/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $host_ip
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$sock
failSwapOn: false
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: 50Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
localStorageCapacityIsolation: false
YAML
start kubelet "$bin/kubelet" \
  --config="$node/kubelet.yaml" \
  --kubeconfig="$dir/kubeconfig" \
  --root-dir="$node/kubelet" \
  --cert-dir="$node/pki" \
  --hostname-override="$node_name" \
  --node-ip="$host_ip" \
  --v=1

# Flags that would set host-wide conntrack sysctls are zeroed (leave them as they are).
start kube-proxy "$bin/kube-proxy" \
  --kubeconfig="$dir/kubeconfig" \
  --hostname-override="$node_name" \
  --proxy-mode=iptables \
  --cluster-cidr="$pod_cidr" \
  --conntrack-max-per-core=0 \
  --conntrack-tcp-timeout-established=0s \
  --conntrack-tcp-timeout-close-wait=0s \
  --healthz-bind-address="127.0.0.1:$proxy_healthz" \
  --metrics-bind-address="127.0.0.1:$proxy_metrics"

start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$dir/kubeconfig" \
  --authentication-kubeconfig="$dir/kubeconfig" \
  --authorization-kubeconfig="$dir/kubeconfig" \
  --leader-elect=false \
  --bind-address=127.0.0.1 \
  --secure-port="$sched_port" \
  --profiling=false

node_ready() {
  [ "$("$bin/kubectl" --kubeconfig="$dir/kubeconfig" get node "$node_name" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
wait_for kubelet "registered a Ready node" node_ready
wait_for kube-proxy "healthy" curl -sf "http://127.0.0.1:$proxy_healthz/healthz"
wait_for kube-scheduler "healthy" curl -sfk "https://127.0.0.1:$sched_port/healthz"
