"""kubelite: a Kubernetes-style cluster in Python."""

import os

# kubelite processes fork children (containers, probes, components) after gRPC has started its
# threads; gRPC's fork handlers would run in those children and can crash them, and no child
# uses gRPC, so they are off unless someone asks for them.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
