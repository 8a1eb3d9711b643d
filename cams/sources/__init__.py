"""Source contracts (SPEC §2): typed parsing of RelayCore records and Auterity spans, and readers."""
