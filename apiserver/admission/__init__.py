"""Admission: the plugins every write passes after authorization, before it is stored
(Kubernetes' admission chain; docs/security.md section 5). One module per plugin;
``chain.Admission`` runs the enabled ones at the API's create, update and delete paths."""

from apiserver.admission.chain import Admission, AdmissionSettings
from apiserver.admission.plugin import Attributes, Plugin

__all__ = ["Admission", "AdmissionSettings", "Attributes", "Plugin"]
