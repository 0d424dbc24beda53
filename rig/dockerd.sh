#!/usr/bin/env bash
# Start or stop a private Docker daemon.
#   rig/dockerd.sh start [NAME] [--no-gpu-hook] [--loopfs=TYPE:SIZE]   prints the socket path
#   rig/dockerd.sh stop  [NAME]                                 stops it by its pid
#   rig/dockerd.sh status [NAME]                                exit 0 if it runs
# NAME defaults to "main". Each daemon has its own --data-root, --exec-root,
# --pidfile and socket under $HS_RIG_STATE / $HS_RIG_RUN, and gets the
# stand-in nvidia-container-runtime-hook on its PATH so GPU device requests
# work; --no-gpu-hook starts one without it (a host with no NVIDIA runtime).
# --loopfs=TYPE:SIZE (ext4 or btrfs, e.g. btrfs:4G) puts the data root on a
# loop-mounted image of its own, so a test sees a small disk for real; with btrfs
# the daemon uses the btrfs storage driver, which enforces --storage-opt size.
# stop unmounts it; the image file stays (remove it with the state directory).
# "main" owns docker0 and iptables. Any other daemon gets a bridge of its own
# (hsbr-NAME) and leaves iptables alone, so it can run beside main: never start
# one with "--bridge none", which makes dockerd delete docker0.
source "$(dirname "$0")/lib.sh"

action="${1:?usage: dockerd.sh start|stop|status [NAME] [--no-gpu-hook]}"; shift
name=main; hook=1; loopfs=""
for a in "$@"; do
    case "$a" in
        --no-gpu-hook) hook=0 ;;
        --loopfs=ext4:*|--loopfs=btrfs:*) loopfs="${a#--loopfs=}" ;;
        -*) echo "unknown option $a" >&2; exit 2 ;;
        *) name="$a" ;;
    esac
done
state="$HS_RIG_STATE/dockerd-$name"
run="$HS_RIG_RUN/$name"
sock="$run/docker.sock"
pidfile="$run/dockerd.pid"

case "$action" in
start)
    mkdir -p "$state/data" "$run/exec"
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "$sock"; exit 0
    fi
    # A daemon killed hard leaves its pidfile and exec-root behind.
    rm -f "$pidfile"
    driver=overlay2
    if [ -n "$loopfs" ]; then
        fs="${loopfs%%:*}"; [ "$fs" = btrfs ] && driver=btrfs
        if ! mountpoint -q "$state/data"; then
            if [ ! -f "$state/$fs.img" ]; then
                truncate -s "${loopfs#*:}" "$state/$fs.img"
                "mkfs.$fs" -q "$state/$fs.img" >/dev/null
            fi
            mount -o loop "$state/$fs.img" "$state/data"
        fi
    fi
    path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    [ "$hook" = 1 ] && path="$HS_REPO/rig/bin:$path"
    args=(--data-root "$state/data" --exec-root "$run/exec" --pidfile "$pidfile"
          -H "unix://$sock" --storage-driver "$driver")
    if [ "$name" != main ]; then
        br="hsbr-${name:0:10}"
        if ! ip link show "$br" >/dev/null 2>&1; then
            n=$(( $(printf '%s' "$name" | cksum | cut -d' ' -f1) % 200 + 20 ))
            ip link add "$br" type bridge
            ip addr add "10.253.$n.1/24" dev "$br"
            ip link set "$br" up
        fi
        args+=(--bridge "$br" --iptables=false --ip-masq=false)
    fi
    log "starting dockerd '$name' on $sock (gpu hook: $hook)"
    env -i PATH="$path" HOME=/root nohup dockerd "${args[@]}" >"$run/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        if DOCKER_HOST="unix://$sock" docker version >/dev/null 2>&1; then echo "$sock"; exit 0; fi
        sleep 0.5
    done
    log "dockerd '$name' did not become ready; last log lines:"; tail -n 20 "$run/dockerd.log" >&2
    exit 1
    ;;
stop)
    [ -f "$pidfile" ] || exit 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping dockerd '$name' (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
    if ls "$state"/*.img >/dev/null 2>&1 && mountpoint -q "$state/data"; then umount "$state/data"; fi
    if [ "$name" != main ]; then ip link del "hsbr-${name:0:10}" 2>/dev/null || true; fi
    ;;
status)
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
    ;;
*) echo "usage: dockerd.sh start|stop|status [NAME]" >&2; exit 2 ;;
esac
