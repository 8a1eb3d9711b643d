"""How far spend overshoots a budget before enforcement, at a given request rate.

Every gateway enforces budgets from usage it has already recorded, so spend keeps flowing for the
enforcement latency L after the budget is gone: overshoot = rate × cost per request × L. CAMS's L
is the export interval of the usage source plus its sensor path (drop -> ingestion -> evaluation ->
state published), measured end to end by tests/test_e2e_daemon.py.

CAMS narrows the gap two ways: (1) a forecast-basis threshold acts on the projected crossing, before
actual spend reaches it; (2) a `downgrade` action at, say, 90 % actual halves or better the cost per
request for the rest of the period, so the tail of the latency costs less. This script prints the
overshoot for each case.

    .venv/bin/python bench/overshoot.py [--latency-s 38] [--export-interval-s 60] [--cost 0.002]
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-s", type=float, default=38.0, help="measured sensor path: drop -> alert delivered")
    ap.add_argument("--export-interval-s", type=float, default=60.0, help="how often the gateway drops usage")
    ap.add_argument("--cost", type=float, default=0.002, help="USD per request")
    ap.add_argument("--budget", type=float, default=1000.0, help="budget in USD")
    ap.add_argument("--downgrade-factor", type=float, default=0.25, help="cost ratio after a one-tier downgrade")
    a = ap.parse_args()
    worst = a.export_interval_s + a.latency_s
    mean = a.export_interval_s / 2 + a.latency_s
    print(
        f"enforcement latency: {a.latency_s:.0f} s CAMS path + up to {a.export_interval_s:.0f} s export interval "
        f"(mean {mean:.0f} s, worst {worst:.0f} s); ${a.cost} per request; ${a.budget:,.0f} budget"
    )
    print(
        f"{'req/s':>7} {'spend/min':>10} {'overshoot mean':>15} {'worst':>10} {'% of budget':>12} "
        f"{'with 90% downgrade':>19}"
    )
    for rate in (1, 10, 100, 1000, 5000):
        per_s = rate * a.cost
        o_mean, o_worst = per_s * mean, per_s * worst
        # downgrade at 90 % actual, block at 100 %: if the downgrade lands before 100 % (r·c·L < 10 % of the
        # budget), the block's latency tail runs at the downgraded cost; otherwise it does not help
        lands_in_time = o_worst < 0.10 * a.budget
        with_downgrade = o_worst * a.downgrade_factor if lands_in_time else o_worst
        print(
            f"{rate:>7} {per_s * 60:>10.2f} {o_mean:>15.2f} {o_worst:>10.2f} {o_worst / a.budget:>12.2%} "
            f"{with_downgrade:>19.2f}"
        )


if __name__ == "__main__":
    main()
