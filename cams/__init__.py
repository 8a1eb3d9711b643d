"""CAMS domain core: plain typed Python that never imports Dagster nor the shell packages."""

__version__ = "0.1.0"
