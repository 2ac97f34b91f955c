"""Manifests shared by more than one test tier."""

from __future__ import annotations

# An Indexed Job whose pods print their index and hostname.
INDEXED_JOB = """
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completions: 3
  parallelism: 2
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: worker
        image: busybox
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$HOSTNAME"]
"""
