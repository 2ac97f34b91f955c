#!/bin/sh
# A kubelite node in one container: kubelet + proxy on the container's own IP.
# SIGTERM stops both (the kubelet stops its pods first). Both commands are the ones
# kubelite/components.py builds (tests/e2e/test_compose.py checks them against it).
#
# The node joins with what the join volume holds (JOIN_DIR, read-only): the kubelet starts
# with the bootstrap kubeconfig (the API server, the cluster CA and the bootstrap token), asks
# for its client certificate (system:node:NAME) and then its serving certificate with
# CertificateSigningRequests, which the controller manager approves and signs, and writes its
# own kubeconfig. Its credentials (NODE_DIR) are kept when the container restarts; pods and
# their volumes (/var/lib/kubelite, a tmpfs) are not. The proxy runs as system:kube-proxy.
# KUBELITE_INSECURE=true (docker-compose.insecure.yml, for learning only): no credentials.
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
JOIN_DIR="${KUBELITE_JOIN_DIR:-/etc/kubelite-join}"
NODE_DIR="${KUBELITE_NODE_DIR:-/var/lib/kubelite-node}"

if [ "${KUBELITE_INSECURE:-false}" = true ]; then
  kubelet_credentials=""
  proxy_credentials=""
else
  kubelet_credentials="--kubeconfig $NODE_DIR/kubelet.conf --bootstrap-kubeconfig"
  kubelet_credentials="$kubelet_credentials $JOIN_DIR/bootstrap-kubelet.conf"
  kubelet_credentials="$kubelet_credentials --cert-dir $NODE_DIR/pki"
  proxy_credentials="--kubeconfig $JOIN_DIR/proxy.conf"
fi

# shellcheck disable=SC2086 # the credentials are separate words (paths without blanks)
kubelite-kubelet --node-name "$NODE_NAME" --address "$NODE_IP" --server "$SERVER" \
  --root-dir /var/lib/kubelite/kubelet --stop-pods-on-exit $kubelet_credentials "$@" &
kubelet=$!
# shellcheck disable=SC2086
kubelite-proxy --node-name "$NODE_NAME" --node-ip "$NODE_IP" --server "$SERVER" \
  $proxy_credentials &
proxy=$!

stop() { kill -TERM "$kubelet" "$proxy" 2>/dev/null || true; }
trap stop TERM INT
# Exit (and let the restart policy act) when either process dies.
while kill -0 "$kubelet" 2>/dev/null && kill -0 "$proxy" 2>/dev/null; do sleep 1; done
stop
wait "$kubelet" || true
wait "$proxy" || true
