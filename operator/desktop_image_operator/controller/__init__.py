"""The running operator: kopf handlers, per-object scheduling, Kubernetes I/O and credentials."""
