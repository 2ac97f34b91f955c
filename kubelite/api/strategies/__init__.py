"""One strategy per kind: its defaults, validation, create and update preparation, deletion and
selectable fields (Kubernetes' pkg/registry/<group>/<kind>/strategy.go). Each kind's strategy
stands beside it in kubelite.api.registry; ``base.Strategy`` holds what kinds share.

Each strategy imports its kind's validation (kubelite.api.validation) in the methods that run
it: clients load the registry, and with it every strategy, for the kinds' names and manifest
tables, and never validate; importing all of validation (and cryptography, for
CertificateSigningRequests) cost every klctl command about a quarter of its start-up."""
