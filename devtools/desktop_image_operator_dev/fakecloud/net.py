"""Loopback-only addressing."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_for_url(host: str) -> str:
    """IPv6 literals need brackets in URLs and gRPC targets."""
    return f"[{host}]" if ":" in host else host
