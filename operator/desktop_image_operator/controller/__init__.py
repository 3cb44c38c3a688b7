"""The running operator: kopf handlers, per-object scheduling, leadership, credentials and grants.

Its face is what the commands need: `run_operator`, its settings, and the default credentials. Inside,
the layers run from the app down: the kopf handlers, the controller, the parts it composes (credentials,
grants, leadership, the Secret guard, the scheduler), and the settings under all of them.
"""

from desktop_image_operator.controller.app import run_operator
from desktop_image_operator.controller.credentials import default_token_source
from desktop_image_operator.controller.run_settings import RunSettings

__all__ = ["RunSettings", "default_token_source", "run_operator"]
