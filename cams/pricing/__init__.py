"""Price book and per-request cost with LiteLLM's field semantics (SPEC §3)."""
