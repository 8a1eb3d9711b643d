"""Warehouse tables (SPEC §4). Money is NUMERIC(20, 10); per-token prices NUMERIC(24, 18).

Changing anything here needs a new Alembic revision in cams/migrations/versions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

Money = Numeric(20, 10, asdecimal=True)
Rate = Numeric(24, 18, asdecimal=True)
Ts = DateTime(timezone=True)
Id = String(200)


def _tokens() -> list[Column]:
    return [
        Column("input_tokens", BigInteger, nullable=False),
        Column("output_tokens", BigInteger, nullable=False),
        Column("cached_input_tokens", BigInteger, nullable=False, server_default="0"),
        Column("cache_creation_input_tokens", BigInteger, nullable=False, server_default="0"),
        Column("reasoning_tokens", BigInteger, nullable=False, server_default="0"),
    ]


relaycore_usage = Table(
    "relaycore_usage",
    metadata,
    Column("day", Date, primary_key=True),
    Column("request_id", Id, primary_key=True),
    Column("timestamp", Ts, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("task_type", String(100), nullable=False),
    Column("model_requested", String(512)),
    Column("model", String(512), nullable=False),
    Column("provider", String(100), nullable=False),
    *_tokens(),
    Column("service_tier", String(20), nullable=False),
    Column("status", String(10), nullable=False),
    Column("latency_ms", BigInteger),
    Column("cost_usd", Money),
    Column("steering_rule", String(512)),
    Column("fallback_from", String(512)),
    Column("ingested_at", Ts, nullable=False),
    comment="RelayCore usage records (SPEC §2.1), one row per request per UTC day, deduplicated.",
)

auterity_spans = Table(
    "auterity_spans",
    metadata,
    Column("day", Date, primary_key=True),
    Column("span_id", String(100), primary_key=True),
    Column("trace_id", String(100), nullable=False),
    Column("name", String(512)),
    Column("start_time", Ts, nullable=False),
    Column("end_time", Ts, nullable=False),
    Column("duration_ms", BigInteger, nullable=False),
    Column("status_code", String(10), nullable=False),
    Column("operation", String(512)),
    Column("provider", String(512)),
    Column("request_model", String(512)),
    Column("response_model", String(512)),
    Column("response_id", String(512)),
    Column("input_tokens", BigInteger),
    Column("output_tokens", BigInteger),
    Column("cached_input_tokens", BigInteger),
    Column("cache_creation_input_tokens", BigInteger),
    Column("reasoning_tokens", BigInteger),
    Column("error_type", String(512)),
    Column("relaycore_request_id", Id),
    Column("org_id", Id),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("task_type", String(100)),
    Column("quality_score", Float),
    Column("feedback", Integer),
    Column("ingested_at", Ts, nullable=False),
    comment="Auterity GenAI spans (SPEC §2.2), one row per span per UTC day, deduplicated.",
)
# No index on relaycore_request_id: reconciliation joins a whole day (migration 0009 says why).

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(40), nullable=False),
    Column("day", Date),
    Column("ref", String(512), nullable=False),
    Column("raw", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("run_id", String(64)),
    Column("quarantined_at", Ts, nullable=False),
    comment="Input that failed validation: never dropped, never blocking (SPEC §2.4).",
)
Index("ix_quarantine_source_day", quarantine.c.source, quarantine.c.day)

model_cost_profiles = Table(
    "model_cost_profiles",
    metadata,
    Column("price_id", String(700), primary_key=True),
    Column("model", String(512), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("mode", String(40), nullable=False),
    Column("valid_from", Ts, nullable=False),
    Column("valid_to", Ts),
    Column("input_cost_per_token", Rate),
    Column("output_cost_per_token", Rate),
    Column("cache_read_input_token_cost", Rate),
    Column("cache_creation_input_token_cost", Rate),
    Column("output_cost_per_reasoning_token", Rate),
    Column("prices_json", Text, nullable=False),
    Column("capabilities_json", Text, nullable=False),
    Column("source", String(200), nullable=False),
    Column("snapshot_version", String(200)),
    Column("loaded_at", Ts, nullable=False),
    Column("retired_at", Ts, comment="set when a reload no longer contains this price; kept for traceability"),
    comment="The effective-dated price book (SPEC §3): one row per model per validity window.",
)
Index("ix_model_cost_profiles_model", model_cost_profiles.c.model, model_cost_profiles.c.valid_from)

cost_tracking = Table(
    "cost_tracking",
    metadata,
    Column("day", Date, primary_key=True),
    Column("request_id", Id, primary_key=True),
    Column("timestamp", Ts, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("task_type", String(100), nullable=False),
    Column("model", String(512), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("service_tier", String(20), nullable=False),
    Column("status", String(10), nullable=False),
    *_tokens(),
    Column("cost_usd", Money, comment="price book cost; NULL when unpriced"),
    Column("charged_usd", Money, comment="what RelayCore charged"),
    Column("unpriced", Boolean, nullable=False),
    Column("price_id", String(700), comment="model_cost_profiles.price_id used"),
    Column("computed_at", Ts, nullable=False),
    Column("steering_rule", String(512), comment="RelayCore's steering rule; null when none applied"),
    Column("model_requested", String(512), comment="the model the caller asked for"),
    Column("fallback_from", String(512), comment="the model that failed over to this one; null when none did"),
    comment="Per-request cost from the price book in force at the request's time (SPEC §3, §4).",
)
Index("ix_cost_tracking_org_day", cost_tracking.c.org_id, cost_tracking.c.day)

cost_daily_rollups = Table(
    "cost_daily_rollups",
    metadata,
    Column("day", Date, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("model", String(512), nullable=False),
    Column("provider", String(100), nullable=False),
    Column("task_type", String(100), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("unpriced_requests", BigInteger, nullable=False),
    *_tokens(),
    Column("cost_usd", Money, nullable=False),
    Column("charged_usd", Money, nullable=False),
    comment="cost_tracking summed per day, org, team, user, model, provider and task type.",
)
Index("ix_cost_daily_rollups_day_org", cost_daily_rollups.c.day, cost_daily_rollups.c.org_id)

steering_daily_rollups = Table(
    "steering_daily_rollups",
    metadata,
    Column("day", Date, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("steering_rule", String(512), comment="RelayCore's steering rule; null when none applied"),
    Column("model_requested", String(512), comment="the model the caller asked for"),
    Column("model", String(512), nullable=False, comment="the model that served"),
    Column("fallback", Boolean, nullable=False, comment="served by a fallback (RelayCore's fallback_from is set)"),
    Column("requests", BigInteger, nullable=False),
    Column("cost_usd", Money, nullable=False),
    Column("charged_usd", Money, nullable=False),
    comment="cost_tracking per day, org, steering rule, model asked for and model served, fallbacks apart.",
)
Index("ix_steering_daily_rollups_day_org", steering_daily_rollups.c.day, steering_daily_rollups.c.org_id)

spend_quarter_hours = Table(
    "spend_quarter_hours",
    metadata,
    Column("day", Date, nullable=False),
    Column("scope", String(10), nullable=False, comment="org, team or user: which of the ids below name it"),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id, comment="a team's row (scope team); null in the others"),
    Column("user_id", Id, comment="a user's row (scope user); null in the others"),
    Column("quarter", BigInteger, nullable=False, comment="quarter hours since 1970-01-01 UTC"),
    Column("requests", BigInteger, nullable=False),
    Column("spend_usd", Money, nullable=False, comment="cost_usd, RelayCore's charge where unpriced"),
    comment="cost_tracking's spend per quarter hour of each org, team of an org and user of an org, what "
    "budgets read; written with each costed day.",
)
Index(
    "ix_spend_quarter_hours_scope_day",
    spend_quarter_hours.c.org_id,
    spend_quarter_hours.c.scope,
    spend_quarter_hours.c.day,
)

cost_sync_history = Table(
    "cost_sync_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(40), nullable=False),
    Column("window_start", Ts, nullable=False),
    Column("window_end", Ts, nullable=False),
    Column("mode", String(20), nullable=False),
    Column("read", BigInteger, nullable=False),
    Column("accepted", BigInteger, nullable=False),
    Column("duplicates", BigInteger, nullable=False),
    Column("quarantined", BigInteger, nullable=False),
    Column("status", String(20), nullable=False),
    Column("detail", Text),
    Column("run_id", String(64)),
    Column("started_at", Ts, nullable=False),
    Column("finished_at", Ts, nullable=False),
    comment="One row per ingestion of a source window: what was read and how it ended.",
)

cost_reconciliation = Table(
    "cost_reconciliation",
    metadata,
    Column("day", Date, primary_key=True),
    Column("request_id", Id, primary_key=True, comment="RelayCore request id (or the span's, when missing there)"),
    Column("category", String(30), nullable=False),
    Column("org_id", Id),
    Column("model", String(512)),
    Column("span_model", String(512)),
    Column("span_id", String(100)),
    Column("relaycore_input_tokens", BigInteger),
    Column("auterity_input_tokens", BigInteger),
    Column("relaycore_output_tokens", BigInteger),
    Column("auterity_output_tokens", BigInteger),
    Column("charged_usd", Money),
    Column("cost_usd", Money),
    Column("at_risk_usd", Money, nullable=False),
    Column("computed_at", Ts, nullable=False),
    comment="Each request of a day in exactly one reconciliation category (SPEC §4).",
)
Index("ix_cost_reconciliation_day_category", cost_reconciliation.c.day, cost_reconciliation.c.category)

cost_reconciliation_summary = Table(
    "cost_reconciliation_summary",
    metadata,
    Column("day", Date, nullable=False),
    Column("org_id", Id),
    Column("model", String(512)),
    Column("category", String(30), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("charged_usd", Money, nullable=False),
    Column("cost_usd", Money, nullable=False),
    Column("at_risk_usd", Money, nullable=False),
    comment="cost_reconciliation per day, org, model and category, with the dollars at risk.",
)
Index("ix_cost_reconciliation_summary_day", cost_reconciliation_summary.c.day)

cost_recomputations = Table(
    "cost_recomputations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", Date, nullable=False),
    Column("rows_before", BigInteger, nullable=False),
    Column("rows_after", BigInteger, nullable=False),
    Column("cost_before_usd", Money, nullable=False),
    Column("cost_after_usd", Money, nullable=False),
    Column("price_ids_before", Text, nullable=False),
    Column("price_ids_after", Text, nullable=False),
    Column("run_id", String(64)),
    Column("recomputed_at", Ts, nullable=False),
    comment="A day of cost_tracking recomputed with different prices: what it was, what it became.",
)

budget_configs = Table(
    "budget_configs",
    metadata,
    Column("id", String(200), primary_key=True),
    Column("name", String(512), nullable=False),
    Column("scope", String(10), nullable=False),
    Column("scope_id", Id, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("period", String(20), nullable=False),
    Column("amount_usd", Money, nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("config_json", Text, nullable=False, comment="the whole budget: thresholds and channels"),
    Column("source", String(10), nullable=False, comment="yaml or api"),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    comment="Budgets from cams.yaml and the Budget API (SPEC §5).",
)

budget_status = Table(
    "budget_status",
    metadata,
    Column("budget_id", String(200), primary_key=True),
    Column("scope", String(10), nullable=False),
    Column("scope_id", Id, nullable=False),
    Column("org_id", Id, nullable=False),
    Column("period_start", Ts, nullable=False),
    Column("period_end", Ts, nullable=False),
    Column("as_of", Ts, nullable=False),
    Column("amount_usd", Money, nullable=False),
    Column("spent_usd", Money, nullable=False),
    Column("forecast_usd", Money, nullable=False),
    Column("percent_used", Float, nullable=False),
    Column("forecast_percent", Float, nullable=False),
    Column("state", String(10), nullable=False),
    Column("action", String(10), nullable=False, comment="what selection must do: none, notify, downgrade, block"),
    Column("projected_exhaustion_at", Ts),
    Column("evaluated_at", Ts, nullable=False),
    comment="The latest evaluation of each budget; selection reads state and action from here.",
)

budget_alerts = Table(
    "budget_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("budget_id", String(200), nullable=False),
    Column("period_start", Ts, nullable=False),
    Column("period_end", Ts, nullable=False),
    Column("level", String(10), nullable=False),
    Column("basis", String(10), nullable=False),
    Column("threshold_percent", Numeric(10, 4), nullable=False),
    Column("percent_used", Float, nullable=False),
    Column("spent_usd", Money, nullable=False),
    Column("forecast_usd", Money, nullable=False),
    Column("amount_usd", Money, nullable=False),
    Column("state", String(10), nullable=False),
    Column("action", String(10), nullable=False),
    Column("fired_at", Ts, nullable=False),
    Column("payload_json", Text, nullable=False),
    UniqueConstraint("budget_id", "period_start", "level", "basis", "threshold_percent", name="uq_budget_alert_once"),
    comment="One row per budget, period and threshold crossed: an alert fires once (SPEC §5).",
)

budget_alert_deliveries = Table(
    "budget_alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alert_id", Integer, nullable=False),
    Column("channel_index", Integer, nullable=False),
    Column("channel_type", String(10), nullable=False),
    Column("target", String(1000), nullable=False),
    Column("status", String(10), nullable=False, comment="pending, sent or failed"),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("updated_at", Ts, nullable=False),
    UniqueConstraint("alert_id", "channel_index", name="uq_delivery_per_channel"),
    comment="Delivery of an alert to one channel, with its status.",
)

budget_alert_attempts = Table(
    "budget_alert_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status", String(10), nullable=False, comment="sent or failed"),
    Column("detail", Text),
    Column("attempted_at", Ts, nullable=False),
    comment="Every delivery attempt: when, and what the channel answered.",
)

model_quality_stats = Table(
    "model_quality_stats",
    metadata,
    Column("model", String(512), primary_key=True),
    Column("task_type", String(100), primary_key=True),
    Column("spans", BigInteger, nullable=False),
    Column("scored", BigInteger, nullable=False),
    Column("mean_score", Float),
    Column("quality", Float, nullable=False, comment="mean score shrunk toward the configured prior"),
    Column("success_rate", Float, nullable=False),
    Column("p50_latency_ms", Float),
    Column("p95_latency_ms", Float),
    Column("median_input_tokens", Float),
    Column("median_output_tokens", Float),
    Column("computed_at", Ts, nullable=False),
    comment="Per model and task type, from Auterity spans (SPEC §6).",
)

quality_day_values = Table(
    "quality_day_values",
    metadata,
    Column("day", Date, primary_key=True),
    Column("model", String(512), primary_key=True),
    Column("task_type", String(100), primary_key=True),
    Column("landing", BigInteger, nullable=False, comment="the cost_sync_history id of the day's spans' landing"),
    Column("spans", BigInteger, nullable=False),
    Column("scored", BigInteger, nullable=False),
    Column("score_sum", Float),
    Column("succeeded", BigInteger, nullable=False, comment="spans whose status is not ERROR"),
    *(
        Column(f"{name}_{part}", LargeBinary, comment=f"{what} (big-endian {kind})")
        for name in ("duration_ms", "input_tokens", "output_tokens")
        for part, what, kind in (
            ("values", "the distinct values, ascending", "float64"),
            ("counts", "their counts", "int64"),
        )
    ),
    comment="model_quality_stats' sums and value counts per day, model and task type, kept while the day's "
    "spans are those of the landing named: a run counts only days landed since (exact percentiles over 30 days).",
)

model_selection_tables = Table(
    "model_selection_tables",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("created_at", Ts, nullable=False),
    Column("table_json", Text, nullable=False),
    Column("as_of", Ts, comment="the evaluation time the table was built for (quality window, prices)"),
    comment="Every published selection table; the newest version is the one served.",
)

selection_preferences = Table(
    "selection_preferences",
    metadata,
    Column("id", String(420), primary_key=True, comment="org:<org_id> or team:<org_id>/<team_id>"),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id, comment="null for an org's own preference"),
    Column("preference_json", Text, nullable=False, comment="the rules: allowed/excluded models and providers"),
    Column("source", String(10), nullable=False, comment="yaml or api"),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    comment="Selection preferences per org and team, from cams.yaml and the Preferences API.",
)

model_selection_explanations = Table(
    "model_selection_explanations",
    metadata,
    Column("id", String(64), primary_key=True, comment="a table row's id, or a selection's id"),
    Column("table_version", String(64), nullable=False),
    Column("kind", String(10), nullable=False, comment="row or selection"),
    Column("org_id", Id),
    Column("request_id", Id),
    Column("explanation_json", Text, nullable=False),
    Column("created_at", Ts, nullable=False),
    comment="Why each table row and each selection chose what it chose.",
)
Index("ix_model_selection_explanations_request", model_selection_explanations.c.request_id)
Index("ix_model_selection_explanations_created_at", model_selection_explanations.c.created_at)

model_selection_history = Table(
    "model_selection_history",
    metadata,
    Column("selection_id", String(64), primary_key=True),
    Column("request_id", Id),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("task_type", String(100), nullable=False),
    Column("quality_tier", String(20), nullable=False),
    Column("served_tier", String(20), nullable=False),
    Column("model", String(512), nullable=False),
    Column("estimated_cost_usd", Money, nullable=False),
    Column("budget_state", String(10), nullable=False),
    Column("binding_constraint", String(100), nullable=False),
    Column("table_version", String(64), nullable=False),
    Column("selected_at", Ts, nullable=False),
    comment="Every selection the endpoint made, written in batches off the hot path.",
)
Index("ix_model_selection_history_selected_at", model_selection_history.c.selected_at)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True, comment="sha256 of the key; the key is never stored"),
    Column("scopes", String(100), nullable=False),
    Column("org_id", Id, comment="set: the key sees and changes only this org"),
    Column("name", String(200)),
    Column("created_at", Ts, nullable=False),
    Column("revoked_at", Ts),
    comment="API keys of the lookup service (SPEC §7).",
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("kind", String(40), nullable=False, comment="cost-data, budget-alert or model-cost-update"),
    Column("body", Text, nullable=False),
    Column("received_at", Ts, nullable=False),
    Column("processed_at", Ts),
    comment="Signed webhook events, stored before the 2xx answer; idempotent on event_id (SPEC §2.3).",
)

savings_report = Table(
    "savings_report",
    metadata,
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("requests", BigInteger, nullable=False),
    Column("actual_usd", Money, nullable=False),
    Column(
        "counterfactual_usd",
        Money,
        nullable=False,
        comment="the same requests on the counterfactual's models (same tokens, time and price book)",
    ),
    Column("savings_usd", Money, nullable=False, comment="counterfactual_usd - actual_usd: positive, spent less"),
    Column("savings_pct", Float, nullable=False),
    Column("counterfactual_quality", Float, comment="the counterfactual models' mean expected quality, when known"),
    Column("table_version", String(64), nullable=False),
    Column("computed_at", Ts, nullable=False),
    Column("user_id", Id),
    Column("counterfactual", String(20), nullable=False, comment="requested, always_standard or always_premium"),
    comment="Spend versus named counterfactuals, per org, team and user, over the 30 days to the as-of.",
)

savings_recommendations = Table(
    "savings_recommendations",
    metadata,
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("task_type", String(100), nullable=False),
    Column("from_model", String(512), nullable=False),
    Column("to_model", String(512), nullable=False),
    Column("tier", String(20), nullable=False, comment="the table's tier whose choice to_model is"),
    Column("requests", BigInteger, nullable=False, comment="the evidence: requests of the scope, task and model"),
    Column("actual_usd", Money, nullable=False),
    Column("projected_usd", Money, nullable=False, comment="the same requests on to_model"),
    Column("monthly_savings_usd", Money, nullable=False, comment="(actual - projected) over 30 days"),
    Column("from_quality", Float, nullable=False),
    Column("to_quality", Float, nullable=False),
    Column("explanation_id", String(200), nullable=False, comment="the table row's explanation (the explainer)"),
    Column("table_version", String(64), nullable=False),
    Column("computed_at", Ts, nullable=False),
    comment="Per org, team and task: a model to move to that costs less at no lower expected quality.",
)

savings_day_groups = Table(
    "savings_day_groups",
    metadata,
    Column("day", Date, nullable=False),
    Column("fingerprint", String(64), nullable=False, comment="the table's choices and the prices they were priced by"),
    Column("org_id", Id, nullable=False),
    Column("team_id", Id),
    Column("user_id", Id),
    Column("task_type", String(100), nullable=False),
    Column("model", String(512), nullable=False),
    Column("asked", String(512), nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("actual_usd", Float),
    Column("asked_usd", Float),
    Column("economy_n", BigInteger, nullable=False),
    Column("economy_actual", Float),
    Column("economy_usd", Float),
    Column("standard_n", BigInteger, nullable=False),
    Column("standard_actual", Float),
    Column("standard_usd", Float),
    Column("premium_n", BigInteger, nullable=False),
    Column("premium_actual", Float),
    Column("premium_usd", Float),
    comment="The savings report's sums per complete day, kept while the table's choices and the prices stay "
    "the same: a run prices only the days it has not priced before. Emptied for a day when it is costed again.",
)
Index("ix_savings_day_groups_day", savings_day_groups.c.day, savings_day_groups.c.fingerprint)

token_estimation_cache = Table(
    "token_estimation_cache",
    metadata,
    Column("encoding", String(40), primary_key=True),
    Column("text_hash", String(32), primary_key=True, comment="blake2b-128 of the text; the text is never stored"),
    Column("tokens", BigInteger, nullable=False),
    Column("created_at", Ts, nullable=False),
    comment="Token counts already computed, shared by every `cams serve` process and kept across restarts.",
)

token_estimates = Table(
    "token_estimates",
    metadata,
    Column("request_id", Id, primary_key=True),
    Column("model", String(512), nullable=False),
    Column("family", String(100), nullable=False),
    Column("encoding", String(40), nullable=False),
    Column("raw_input_tokens", BigInteger, nullable=False, comment="the tokenizer's count, before calibration"),
    Column("estimated_at", Ts, nullable=False),
    comment="Estimates made for a known request id, later matched to the actual usage to learn calibration.",
)
Index("ix_token_estimates_estimated_at", token_estimates.c.estimated_at)

token_calibration = Table(
    "token_calibration",
    metadata,
    Column("family", String(100), primary_key=True),
    Column("encoding", String(40), primary_key=True),
    Column("samples", BigInteger, nullable=False),
    Column("ratio", Float, nullable=False, comment="median of actual input tokens / tokenizer count"),
    Column("p10_ratio", Float, nullable=False),
    Column("p90_ratio", Float, nullable=False),
    Column("computed_at", Ts, nullable=False),
    comment="Per model family and encoding: how far the offline tokenizer is from what the provider bills.",
)

model_price_overrides = Table(
    "model_price_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(512), nullable=False),
    Column("override_json", Text, nullable=False, comment="an override as in cams.yaml pricing.overrides"),
    Column("valid_from", Ts, nullable=False),
    Column("created_by", String(32), comment="api_keys.id of the writer"),
    Column("created_at", Ts, nullable=False),
    Column("deleted_at", Ts, comment="set by DELETE /api/v1/models/{id}; kept for the audit trail"),
    comment="Prices written through the Models API; merged after cams.yaml's overrides into every price book.",
)
Index("ix_model_price_overrides_model", model_price_overrides.c.model)

price_versions = Table(
    "price_versions",
    metadata,
    Column("version_id", Id, primary_key=True, comment="label@effective time#content digest"),
    Column("effective_from", Ts, nullable=False, comment="the instant its prices take effect"),
    Column("digest", String(64), nullable=False, comment="sha256 of the models and aliases it prices"),
    Column("source", Text, nullable=False, comment="where the snapshot came from (file, URL, litellm package)"),
    Column("snapshot_json", Text, nullable=False, comment="the slimmed LiteLLM price map"),
    Column("created_at", Ts, nullable=False),
    Column("created_by", String(200), comment="cams pricing refresh, a webhook event, the first load, ..."),
    comment="Dated versions of the LiteLLM price snapshot (SPEC §3): the first one is the committed snapshot "
    "as first loaded, from 1970; each refresh adds one from its effective time.",
)
Index("ix_price_versions_effective_from", price_versions.c.effective_from)
