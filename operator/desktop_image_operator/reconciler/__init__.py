"""Deciding what a DesktopImage needs and doing it through the cloud client, independent of kopf."""
