"""Metrics (and later logging helpers) of the operator."""
