#!/usr/bin/env bash
# A Docker daemon for make image / make test on a machine without one running (no systemd needed).
#
#   bin/dev-dockerd.sh start   ensure a daemon answers on $DOCKER_HOST; start our own when none does
#   bin/dev-dockerd.sh stop    stop the daemon this script started (by its PID), nothing else
#
# Our daemon keeps its own data root (images and build cache survive between runs, outside any clone), its own
# exec root and socket, and touches neither the host's firewall nor a bridge: builds and containers use the host's
# network (--network host), so apt and pip reach the mirrors the host reaches and the tests reach a loopback moto.
set -euo pipefail

DATA_ROOT=${BDRC_DOCKER_DATA_ROOT:-/var/lib/bdrc-restore-docker}
RUN_DIR=${BDRC_DOCKER_RUN_DIR:-/run/bdrc-restore-docker}
DOCKER_HOST=${DOCKER_HOST:-unix://$RUN_DIR/docker.sock}
export DOCKER_HOST
PID_FILE=$RUN_DIR/started-by-make.pid
LOG_FILE=$DATA_ROOT.log

answers() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
    if answers; then
        return 0
    fi
    command -v dockerd >/dev/null || { echo "dev-dockerd: no dockerd (apt-get install docker.io)" >&2; exit 1; }
    [[ $DOCKER_HOST == "unix://$RUN_DIR/docker.sock" ]] \
        || { echo "dev-dockerd: nothing answers on DOCKER_HOST=$DOCKER_HOST, and it is not ours to start" >&2; exit 1; }
    mkdir -p -- "$DATA_ROOT" "$RUN_DIR"
    # containerd is started by dockerd itself (its state under the exec root)
    dockerd --data-root "$DATA_ROOT" --exec-root "$RUN_DIR/exec" --pidfile "$RUN_DIR/dockerd.pid" \
        --host "$DOCKER_HOST" --storage-driver overlay2 --bridge none --iptables=false --ip6tables=false \
        >>"$LOG_FILE" 2>&1 &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    local waited=0
    until answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f -- "$PID_FILE"
            echo "dev-dockerd: dockerd exited at start; the end of $LOG_FILE:" >&2
            tail -n 20 -- "$LOG_FILE" >&2
            exit 1
        fi
        (( waited++ < 300 )) || { echo "dev-dockerd: dockerd not ready after 30 s (see $LOG_FILE)" >&2; exit 1; }
        sleep 0.1
    done
    echo "dev-dockerd: started dockerd (PID $pid, data root $DATA_ROOT, $DOCKER_HOST)"
}

stop() {
    [[ -f $PID_FILE ]] || return 0
    local pid
    pid=$(<"$PID_FILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        local waited=0
        while kill -0 "$pid" 2>/dev/null && (( waited++ < 300 )); do sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && { echo "dev-dockerd: dockerd $pid still running after 30 s" >&2; exit 1; }
        echo "dev-dockerd: stopped dockerd (PID $pid)"
    fi
    rm -f -- "$PID_FILE"
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
