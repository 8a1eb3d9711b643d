"""Dagster assets and their checks, a module per domain, thin over `cams`."""

import warnings

import dagster as dg

# The beta parameters the assets use on purpose (backfill_policy, and AssetSelection.all(include_sources)
# in the automation tests) are pinned with the Dagster version in constraints.txt; their warnings say
# nothing to a user of `cams run`, the UI or the daemon's logs. (Importing Great Expectations used to hide
# them as a side effect; it is now imported only when a check runs.)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
