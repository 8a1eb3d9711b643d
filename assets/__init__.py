"""Dagster assets and their checks, a module per domain, thin over `cams`."""
