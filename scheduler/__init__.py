"""kubelite-scheduler: places unscheduled pods on nodes (kube-scheduler's analogue)."""
