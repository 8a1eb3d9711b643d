"""The lookup service (SPEC §7): FastAPI over an in-memory selection table."""
