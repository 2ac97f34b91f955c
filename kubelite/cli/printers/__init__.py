"""What klctl prints: kubectl's tables, ages, pod status and describe text.

Column sets, cell formats and the tabwriter layout follow kubectl's printers
(``pkg/printers/internalversion/printers.go`` and ``describe.go``) so that output reads the
same as kubectl's. As kubectl keeps them apart, :mod:`.tables` holds what ``get`` prints
(columns per kind, wide, name), :mod:`.describe` what ``describe`` prints, and
:mod:`.serialize` the YAML and JSON of ``-o yaml|json``; :mod:`.tabwriter` and
:mod:`.formats` are what they share.
"""
