"""The i2v-cluster Grafana dashboard, as grafanalib source; `i2v-cluster.json` beside it is its output.

    python deploy/grafana/dashboard.py            # rewrite i2v-cluster.json
    python deploy/grafana/dashboard.py --check    # exit 1 if i2v-cluster.json is stale

Import the JSON in Grafana (Dashboards > New > Import) and pick a Prometheus data source; it uses the
job labels of deploy/prometheus/rules.yml (job="i2v-coordinator", job="i2v-node"). Coordinator views
that only the leader knows are joined `on (instance)` with i2v_coordinator_is_leader == 1, so a
standby's stale figures never show. docs/operations.md explains every metric.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from grafanalib._gen import DashboardEncoder
from grafanalib.core import (
    Dashboard,
    GridPos,
    Heatmap,
    RowPanel,
    Target,
    Template,
    Templating,
    TimeSeries,
)
from grafanalib.core import (
    Panel as _Panel,
)

OUT = Path(__file__).with_name("i2v-cluster.json")
DS = "${datasource}"
C = 'job="i2v-coordinator"'
N = 'job="i2v-node"'
LEADER = f"on (instance) group_left () (i2v_coordinator_is_leader{{{C}}} == 1)"
WIDTH = 24


def leader(expr: str) -> str:
    """`expr` (a coordinator series) as the leader reports it."""
    return f"({expr}) * {LEADER}"


def quantile(q: float, metric: str, by: str = "", window: str = "5m") -> str:
    """The q-quantile of a histogram's buckets, per value of the labels `by` when given."""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}[{window}])))"


def quantiles(metric: str, by: str = "", window: str = "5m") -> list[Target]:
    """p50, p95 and p99 of a histogram, per value of the label `by` when given."""
    label = f" {{{{{by}}}}}" if by else ""
    return [
        Target(
            expr=quantile(q, metric, by, window),
            legendFormat=f"p{round(q * 100)}{label}",
            refId=chr(ord("A") + i),
        )
        for i, q in enumerate((0.5, 0.95, 0.99))
    ]


def series(title: str, targets: Sequence[Target], unit: str = "short", **extra: object) -> TimeSeries:
    return TimeSeries(title=title, dataSource=DS, targets=list(targets), unit=unit, **extra)


def t(expr: str, legend: str, ref: str = "A") -> Target:
    return Target(expr=expr, legendFormat=legend, refId=ref)


def heatmap(title: str, metric: str, description: str) -> Heatmap:
    return Heatmap(
        title=title,
        description=description,
        dataSource=DS,
        dataFormat="tsbuckets",
        targets=[
            Target(
                expr=f"sum by (le) (increase({metric}[$__rate_interval]))",
                legendFormat="{{le}}",
                format="heatmap",
                refId="A",
            )
        ],
        yBucketBound="upper",
        hideZeroBuckets=True,
    )


def cluster() -> list[_Panel]:
    return [
        series(
            "Leader and epoch",
            [
                t(f"i2v_coordinator_is_leader{{{C}}}", "leading: {{instance}}"),
                t(f"max(i2v_coordinator_epoch{{{C}}})", "epoch", "B"),
            ],
            description="Which coordinator leads (1) and the epoch it leads in; a step in the epoch "
            "is a new term.",
            lineInterpolation="stepAfter",
        ),
        series(
            "Terms and failovers (per 10 min)",
            [
                t(f"sum(increase(i2v_coordinator_terms_total{{{C}}}[10m]))", "terms started"),
                t(f"sum(increase(i2v_failovers_total{{{C}}}[10m]))", "failovers", "B"),
            ],
        ),
        series(
            "Nodes by tier and state (leader's view)",
            [t(leader(f"i2v_nodes{{{C}}}"), "{{tier}} {{state}}")],
            stacking={"mode": "normal", "group": "A"},
        ),
        series(
            "Nodes set aside and cooling down",
            [
                t(leader(f"i2v_coordinator_nodes_set_aside{{{C}}}"), "set aside"),
                t(leader(f"i2v_coordinator_nodes_cooling{{{C}}}"), "cooling", "B"),
                t(f"sum(up{{{N}}} == 0) or vector(0)", "node targets down", "C"),
            ],
        ),
        series("etcd reachable", [t("i2v_etcd_up", "{{job}} {{instance}}")], valueMax=1),
        series(
            "Event loop lag p99 (coordinators)",
            [
                t(
                    quantile(0.99, f"i2v_event_loop_lag_seconds_bucket{{{C}}}", "instance"),
                    "{{instance}}",
                )
            ],
            unit="s",
        ),
    ]


def memory() -> list[_Panel]:
    return [
        series(
            "GPU memory used per node",
            [
                t(f"i2v_gpu_memory_used_bytes{{{N}}}", "used {{instance}} {{gpu}}"),
                t(f"i2v_gpu_memory_total_bytes{{{N}}}", "total {{instance}} {{gpu}}", "B"),
            ],
            unit="bytes",
            description="Device memory in use by every process (this node's weights, cache and job "
            'included); a simulated card (gpu="simulated") shows the running job\'s estimate.',
        ),
        series(
            "Memory each node's next job can use",
            [t(f"i2v_node_memory_available_bytes{{{N}}}", "{{instance}} {{device}} ({{kind}})")],
            unit="bytes",
        ),
        series(
            "Free bytes routing sees, per node and tier",
            [t(leader(f"i2v_coordinator_node_free_bytes{{{C}}}"), "{{node}} ({{tier}})")],
            unit="bytes",
        ),
        series(
            "Host memory (CPU nodes) and process RSS",
            [
                t(f"i2v_host_memory_used_bytes{{{N}}}", "host used {{instance}}"),
                t('process_resident_memory_bytes{job=~"i2v-.*"}', "rss {{job}} {{instance}}", "B"),
            ],
            unit="bytes",
        ),
        series(
            "Job peak memory vs the memory model",
            [
                t(
                    quantile(0.95, f"i2v_job_peak_bytes_bucket{{{N}}}", window="30m"),
                    "peak p95",
                ),
                t(f"max(i2v_node_running_job_estimated_bytes{{{N}}})", "largest running estimate", "B"),
            ],
            unit="bytes",
        ),
    ]


def queue() -> list[_Panel]:
    return [
        series(
            "Queued jobs by required tier (leader)",
            [
                t(leader(f"i2v_coordinator_queued_jobs{{{C}}}"), "{{required_tier}}"),
                t(leader(f"i2v_coordinator_queue_limit{{{C}}}"), "limit", "B"),
            ],
            stacking={"mode": "normal", "group": "A"},
        ),
        series(
            "Queued jobs no live node can serve",
            [t(leader(f"i2v_coordinator_queued_unservable_jobs{{{C}}}"), "{{required_tier}}")],
        ),
        series(
            "Queue wait",
            [
                *quantiles(f"i2v_queue_wait_seconds_bucket{{{C}}}"),
                t(leader(f"i2v_coordinator_oldest_queued_seconds{{{C}}}"), "oldest queued", "D"),
            ],
            unit="s",
        ),
        heatmap("Queue wait heatmap", f"i2v_queue_wait_seconds_bucket{{{C}}}", "Submit to assignment."),
        series(
            "Submit rejections by reason (per second)",
            [t(f"sum by (reason) (rate(i2v_coordinator_submit_rejections_total{{{C}}}[5m]))", "{{reason}}")],
            unit="reqps",
        ),
        series(
            "Jobs finished by state and code (per second)",
            [
                t(
                    f"sum by (state, code) (rate(i2v_coordinator_jobs_finished_total{{{C}}}[5m]))",
                    "{{state}} {{code}}",
                )
            ],
            unit="ops",
        ),
    ]


def latency() -> list[_Panel]:
    return [
        series(
            "Generation time p95 by tier and resolution class",
            [
                t(
                    quantile(
                        0.95, f"i2v_generation_duration_seconds_bucket{{{N}}}", "tier, resolution", "15m"
                    ),
                    "{{tier}} {{resolution}}",
                )
            ],
            unit="s",
        ),
        heatmap(
            "Generation time heatmap",
            f"i2v_generation_duration_seconds_bucket{{{N}}}",
            "Request receipt to result of successful jobs, every node.",
        ),
        series("Submit to final state", quantiles(f"i2v_job_end_to_end_seconds_bucket{{{C}}}"), unit="s"),
        series(
            "Denoising step p95 by tier",
            [t(quantile(0.95, f"i2v_step_duration_seconds_bucket{{{N}}}", "tier"), "{{tier}}")],
            unit="s",
        ),
        series(
            "RPC latency p95 by method",
            [
                t(
                    quantile(0.95, 'i2v_rpc_duration_seconds_bucket{service=~"i2v.*"}', "job, method"),
                    "{{job}} {{method}}",
                )
            ],
            unit="s",
        ),
        series(
            "RPCs by method and code (per second)",
            [
                t(
                    'sum by (job, method, code) (rate(i2v_rpc_handled_total{service=~"i2v.*"}[5m]))',
                    "{{job}} {{method}} {{code}}",
                )
            ],
            unit="reqps",
        ),
    ]


def failures() -> list[_Panel]:
    return [
        series(
            "Out-of-memory errors by tier and stage (per 10 min)",
            [t(f"sum by (tier, stage) (increase(i2v_oom_total{{{N}}}[10m]))", "{{tier}} {{stage}}")],
        ),
        series(
            "Degradations by kind (per 10 min)",
            [t(f"sum by (kind) (increase(i2v_degradations_total{{{N}}}[10m]))", "{{kind}}")],
        ),
        series(
            "Node outcomes (per 10 min)",
            [t(f"sum by (outcome) (increase(i2v_jobs_total{{{N}}}[10m]))", "{{outcome}}")],
        ),
        series(
            "Node failures seen by the leader (per 10 min)",
            [
                t(
                    f"sum by (reason) (increase(i2v_coordinator_node_cooldowns_total{{{C}}}[10m]))",
                    "{{reason}}",
                ),
                t(f"sum(increase(i2v_coordinator_node_set_asides_total{{{C}}}[10m]))", "set aside", "B"),
                t(f"sum(increase(i2v_requeues_total{{{C}}}[10m]))", "requeued", "C"),
            ],
        ),
    ]


def storage() -> list[_Panel]:
    return [
        series(
            "etcd call latency p99 by op",
            [
                t(
                    quantile(0.99, "i2v_etcd_call_seconds_bucket", "job, op"),
                    "{{job}} {{op}}",
                )
            ],
            unit="s",
        ),
        series(
            "etcd errors (per second)",
            [t("sum by (job, op) (rate(i2v_etcd_errors_total[5m]))", "{{job}} {{op}}")],
            unit="ops",
        ),
        series(
            "Oldest finished job vs retention",
            [
                t(leader(f"i2v_oldest_finished_job_age_seconds{{{C}}}"), "oldest finished job"),
                t(leader(f"i2v_retention_max_age_seconds{{{C}}}"), "--retention-max-age", "B"),
            ],
            unit="s",
        ),
        series(
            "Retention removals (per 10 min)",
            [t(f"sum(increase(i2v_retention_removed_jobs_total{{{C}}}[10m]))", "removed")],
        ),
    ]


def layout(sections: Sequence[tuple[str, list[_Panel]]]) -> list[_Panel]:
    """Rows of panels, three to a line, each section under a row header."""
    panels: list[_Panel] = []
    y = 0
    for title, members in sections:
        panels.append(RowPanel(title=title, gridPos=GridPos(h=1, w=WIDTH, x=0, y=y)))
        y += 1
        for i, panel in enumerate(members):
            panel.gridPos = GridPos(h=8, w=WIDTH // 3, x=(i % 3) * (WIDTH // 3), y=y + (i // 3) * 8)
            panels.append(panel)
        y += ((len(members) + 2) // 3) * 8
    return panels


def dashboard() -> Dashboard:
    return Dashboard(
        title="i2v-cluster",
        uid="i2v-cluster",
        description="Image-to-video cluster: leadership, VRAM, queue, latency, OOM and degradations, "
        "etcd and retention (docs/operations.md).",
        tags=["i2v-cluster"],
        timezone="utc",
        refresh="30s",
        templating=Templating(
            list=[Template(name="datasource", label="Data source", query="prometheus", type="datasource")]
        ),
        panels=layout(
            [
                ("Cluster", cluster()),
                ("Memory", memory()),
                ("Queue and jobs", queue()),
                ("Latency", latency()),
                ("OOM and degradations", failures()),
                ("etcd and retention", storage()),
            ]
        ),
    ).auto_panel_ids()


def render() -> str:
    return json.dumps(dashboard().to_json_data(), cls=DashboardEncoder, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if OUT.read_text() != text:
            print(f"{OUT.name} is stale: run python deploy/grafana/dashboard.py")
            return 1
        return 0
    if argv:
        print(__doc__.splitlines()[2].strip())
        return 2
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
