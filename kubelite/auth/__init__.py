"""Who a request comes from, and the credentials that say so (shared by the API server, the
kubelet and the controller manager)."""
