"""One strategy per kind: its defaults, validation, create and update preparation, deletion and
selectable fields (Kubernetes' pkg/registry/<group>/<kind>/strategy.go). Each kind's strategy
stands beside it in kubelite.api.registry; ``base.Strategy`` holds what kinds share."""
