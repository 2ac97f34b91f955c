#!/bin/sh
# A kubelite node in one container: kubelet + proxy on the container's own IP.
# SIGTERM stops both (the kubelet stops its pods first). Both commands are the ones
# kubelite/components.py builds (tests/e2e/test_compose.py checks them against it).
set -eu
NODE_IP="${NODE_IP:-$(hostname -i | awk '{print $1}')}"
# The node is named after its container (docker's DNS names a container's address by its
# container name; '_' becomes '-'), so every replica of a scaled service has a name of its own
# and `docker ps` shows which container is which node.
if [ -z "${NODE_NAME:-}" ]; then
  NODE_NAME=$(busybox nslookup "$NODE_IP" 127.0.0.11 2>/dev/null \
    | sed -n 's/.*name = \([^.]*\).*/\1/p' | head -n 1 | tr 'A-Z_' 'a-z-')
  NODE_NAME="${NODE_NAME:-$(hostname)}"
fi
SERVER="${KUBELITE_SERVER:-apiserver:6443}"

kubelite-kubelet --node-name "$NODE_NAME" --address "$NODE_IP" --server "$SERVER" \
  --root-dir /var/lib/kubelite/kubelet --stop-pods-on-exit "$@" &
kubelet=$!
kubelite-proxy --node-name "$NODE_NAME" --node-ip "$NODE_IP" --server "$SERVER" &
proxy=$!

stop() { kill -TERM "$kubelet" "$proxy" 2>/dev/null || true; }
trap stop TERM INT
# Exit (and let the restart policy act) when either process dies.
while kill -0 "$kubelet" 2>/dev/null && kill -0 "$proxy" 2>/dev/null; do sleep 1; done
stop
wait "$kubelet" || true
wait "$proxy" || true
