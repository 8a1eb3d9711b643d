"""A deterministic simulator of RelayCore usage and Auterity spans, with deliberate faults."""
