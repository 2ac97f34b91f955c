"""Authorization: who may do what (docs/security.md section 4).

``attributes`` says what a request asks for; ``node`` (the Node authorizer) and ``rbac`` decide,
in that order, behind the ``system:masters`` short cut (``authorizer.Chain``);
``bootstrap_policy`` holds the roles and bindings every cluster starts with; ``review``
answers SubjectAccessReviews; ``store`` keeps the in-memory copies they all read.
"""
