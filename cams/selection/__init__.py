"""Model selection (SPEC §6): quality stats, the published selection table, and in-memory selection."""
