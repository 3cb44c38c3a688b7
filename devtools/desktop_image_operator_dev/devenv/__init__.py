"""The local development environment: a real Kubernetes control plane and the tooling around it."""
