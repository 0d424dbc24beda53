#!/usr/bin/env bash
# A two-node Docker Swarm on this machine, for the Swarm tests:
#   rig/swarm.sh start   prints shell assignments: HS_SWARM_MANAGER, HS_SWARM_WORKER, HS_SWARM_HOST_IP,
#                        HS_SWARM_IMAGE (the single-user image in the swarm's registry)
#   rig/swarm.sh stop    stops both daemons (by pid) and removes their network namespaces
# Each node is a private dockerd in its own network namespace (nsenter --net
# keeps the cgroup mounts that "ip netns exec" would hide), plugged into a
# host bridge hsswarm0 (10.254.10.1/24): manager 10.254.10.2, worker
# 10.254.10.3. Both run with the daemon-wide --no-new-privileges (swarm
# services cannot ask for it per service on Docker 20.10) and an engine
# label saying so. The worker advertises two GPUs as node generic resources
# (NVIDIA-GPU) and carries the node label gpu=true. No outside registry is
# reachable: the single-user image is loaded into the manager (admission reads
# it there) and pushed to Debian's docker-registry on the swarm bridge; tasks
# run name@<registry digest>, which each node pulls from there.
source "$(dirname "$0")/lib.sh"

BRIDGE=hsswarm0
HOST_IP=10.254.10.1
NODES=(manager worker)
declare -A IP=([manager]=10.254.10.2 [worker]=10.254.10.3)
declare -A BIP=([manager]=172.31.2.1/24 [worker]=172.31.3.1/24)

REGISTRY="$HOST_IP:5001"  # Debian's docker-registry on the swarm bridge: tasks run name@<registry digest>
sock() { echo "$HS_RIG_RUN/swarm-$1/docker.sock"; }
dk() { local node=$1; shift; DOCKER_HOST="unix://$(sock "$node")" docker "$@"; }

start_node() {
    local node=$1 ns="hs-swarm-$1" veth="hsv-$1" run="$HS_RIG_RUN/swarm-$1"
    if ! ip netns list | grep -qw "$ns"; then
        ip netns add "$ns"
        ip link add "$veth" type veth peer name eth0 netns "$ns"
        ip link set "$veth" master "$BRIDGE" up
        ip netns exec "$ns" ip addr add "${IP[$node]}/24" dev eth0
        ip netns exec "$ns" ip link set eth0 up
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip route add default via "$HOST_IP"
    fi
    if [ -f "$run/dockerd.pid" ] && kill -0 "$(cat "$run/dockerd.pid")" 2>/dev/null; then return; fi
    mkdir -p "$run/exec" "$HS_RIG_STATE/swarm-$node"
    local args=(--data-root "$HS_RIG_STATE/swarm-$node" --exec-root "$run/exec"
                --pidfile "$run/dockerd.pid" -H "unix://$(sock "$node")" --bip "${BIP[$node]}"
                --no-new-privileges --label hardened-spawner.no-new-privileges=true
                --insecure-registry "$REGISTRY")
    if [ "$node" = worker ]; then
        args+=(--node-generic-resource NVIDIA-GPU=GPU-w0 --node-generic-resource NVIDIA-GPU=GPU-w1)
    fi
    log "starting swarm $node dockerd in netns $ns (${IP[$node]})"
    nsenter --net="/var/run/netns/$ns" env -i PATH="$HS_REPO/rig/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        HOME=/root \
        nohup dockerd "${args[@]}" >"$run/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do dk "$node" version >/dev/null 2>&1 && return; sleep 0.5; done
    tail -n 20 "$run/dockerd.log" >&2; exit 1
}

start_registry() {
    local dir="$HS_RIG_STATE/swarm-registry" pidfile="$HS_RIG_RUN/swarm-registry.pid"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
    mkdir -p "$dir/data"
    printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/data\nhttp:\n  addr: %s\nlog:\n  level: warn\n' \
        "$dir" "$REGISTRY" >"$dir/config.yml"
    nohup docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 40); do
        "$HS_PYTHON" -c "import urllib.request; urllib.request.urlopen('http://$REGISTRY/v2/', timeout=1)" \
            2>/dev/null && return
        sleep 0.25
    done
    tail -n 20 "$dir/log" >&2; exit 1
}

# Push the image from the manager to the registry, so it has a registry digest the tasks run by.
push_image() {
    local image=$1 ref="$REGISTRY/$1"
    dk manager tag "$image" "$ref"
    dk manager push -q "$ref" >/dev/null
    echo "$ref"
}

load_image() {
    local node=$1 image=$2
    dk "$node" image inspect "$image" >/dev/null 2>&1 && return
    log "loading $image into swarm $node"
    docker save "$image" | dk "$node" load -q >/dev/null
}

case "${1:-}" in
start)
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$HOST_IP/24" dev "$BRIDGE"
        ip link set "$BRIDGE" up
    fi
    # Docker loads br_netfilter and drops forwarded traffic by default: let the nodes talk.
    iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    for node in "${NODES[@]}"; do start_node "$node"; done
    if [ "$(dk manager info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        dk manager swarm init --advertise-addr "${IP[manager]}" >/dev/null
    fi
    if [ "$(dk worker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
        token="$(dk manager swarm join-token -q worker)"
        dk worker swarm join --token "$token" "${IP[manager]}:2377" >/dev/null
    fi
    worker_id="$(dk worker info --format '{{.Swarm.NodeID}}')"
    dk manager node update --label-add gpu=true "$worker_id" >/dev/null
    load_image manager "$HS_SINGLEUSER_IMAGE"
    start_registry
    echo "HS_SWARM_IMAGE=$(push_image "$HS_SINGLEUSER_IMAGE")"
    echo "HS_SWARM_MANAGER=unix://$(sock manager)"
    echo "HS_SWARM_WORKER=unix://$(sock worker)"
    echo "HS_SWARM_HOST_IP=$HOST_IP"
    ;;
stop)
    pidfile="$HS_RIG_RUN/swarm-registry.pid"
    if [ -f "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; rm -f "$pidfile"; fi
    for node in "${NODES[@]}"; do
        pidfile="$HS_RIG_RUN/swarm-$node/dockerd.pid"
        if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            pid="$(cat "$pidfile")"; log "stopping swarm $node dockerd (pid $pid)"
            kill "$pid"
            for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        fi
        rm -f "$pidfile"
        ip netns del "hs-swarm-$node" 2>/dev/null || true
    done
    iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link del "$BRIDGE" 2>/dev/null || true
    ;;
*) echo "usage: swarm.sh start|stop" >&2; exit 2 ;;
esac
