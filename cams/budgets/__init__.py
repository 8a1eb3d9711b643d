"""Budgets (SPEC §5): configuration, periods, forecasts, evaluation, alerts and their delivery."""
