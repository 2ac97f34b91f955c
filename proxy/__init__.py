"""kubelite-proxy: per node, Services' ClusterIPs and NodePorts served by userspace listeners
that round-robin new connections over the ready endpoints (kube-proxy's original userspace
mode)."""
