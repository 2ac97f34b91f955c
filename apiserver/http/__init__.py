"""The Kubernetes-compatible HTTP/JSON API, served beside gRPC over the same Api."""
