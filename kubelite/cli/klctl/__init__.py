"""klctl: kubectl for kubelite.

Verbs, flags, output and error text follow kubectl so that what works with kubectl works here:
apply, create, get, describe, delete, label, annotate, patch, scale, set, rollout, logs, exec,
version, api-resources.
Every failure is one ``error: ...`` or ``Error from server (Reason): ...`` line on stderr and
exit status 1, never a traceback.

One module per verb group (``apply``, ``get``, ``describe``, ``delete``, ``patch``, ``scale``,
``rollout``, ``logs``, ``version``), each registering its own parsers; ``cmd`` builds the
command line and dispatches. ``main`` is the console script.
"""

from kubelite.cli.klctl.cmd import main, run

__all__ = ["main", "run"]
