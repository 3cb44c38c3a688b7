"""Kubernetes operator that manages Yandex Cloud Desktop images declaratively."""

__version__ = "0.1.0"
