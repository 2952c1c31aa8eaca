"""Progressive delivery: Flagger's Canary run by the control plane.

:mod:`.objects` generates what a Canary owns (primary Deployment, Services, VirtualService,
DestinationRules); :mod:`.checks` runs its metric queries against Prometheus and calls its
webhooks; :mod:`.controller` is the scheduler that moves each Canary through its phases.
"""

from pilotfish.canary.checks import HttpChecks
from pilotfish.canary.controller import CanaryController, ControllerSettings

__all__ = ["CanaryController", "ControllerSettings", "HttpChecks"]
