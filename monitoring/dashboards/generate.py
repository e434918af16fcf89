"""Grafana dashboards as code (grafana-foundation-sdk): writes monitoring/dashboards/*.json.

    python monitoring/dashboards/generate.py          # regenerate the JSON
    python monitoring/dashboards/generate.py --check  # exit 1 when the checked-in JSON differs (CI does this)

Dashboards: the platform overview (SLOs and error budgets), one per service (rate, errors, duration, saturation),
the database (postgres_exporter or CloudNativePG), the download queue. Output is deterministic: sorted keys, fixed
ids and uids.

Every panel query is proven against a running platform by tests/test_monitoring_e2e.py, except those that cannot
have data there (not_local_reason): on a service the local stack does not run (its SLO panels), or on metrics only
the Kubernetes target exports (KUBERNETES_METRICS: CloudNativePG's WAL archiving and backups, kubelet's volumes).
Those panels say so in their description.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import re
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

HERE = Path(__file__).resolve().parent
MONITORING = HERE.parent
REPO = MONITORING.parent

# Metrics that only the Kubernetes target exports, as its exporters name them: CloudNativePG 1.24's instances (the
# instance manager's collector, and the operator's default-monitoring queries, whose metrics are named
# cnpg_<query>_<column>; checked against config/manager/default-monitoring.yaml and
# pkg/management/postgres/webserver/metricserver of v1.24.4), kubelet's volume statistics and kube-state-metrics.
# The dashboards and alerts/kubernetes.yaml use these names only (tests check it). A query that reads nothing else
# cannot have data on the embedded platform: the end-to-end test skips it (not_local_reason), and it must be shown on
# Kubernetes only.
KUBERNETES_METRICS: frozenset[str] = frozenset(
    {
        "cnpg_collector_up",
        "cnpg_collector_fencing_on",
        "cnpg_collector_pg_wal",
        "cnpg_collector_pg_wal_archive_status",
        "cnpg_collector_first_recoverability_point",
        "cnpg_collector_last_available_backup_timestamp",
        "cnpg_collector_last_failed_backup_timestamp",
        "cnpg_backends_total",
        "cnpg_backends_max_tx_duration_seconds",
        "cnpg_backends_waiting_total",
        "cnpg_pg_database_size_bytes",
        "cnpg_pg_settings_setting",
        "cnpg_pg_postmaster_start_time",
        "cnpg_pg_replication_lag",
        "cnpg_pg_replication_in_recovery",
        "cnpg_pg_replication_is_wal_receiver_up",
        "cnpg_pg_replication_streaming_replicas",
        *(
            f"cnpg_pg_stat_archiver_{column}"
            for column in (
                "archived_count",
                "failed_count",
                "seconds_since_last_archival",
                "seconds_since_last_failure",
                "last_archived_time",
                "last_failed_time",
            )
        ),
        *(
            f"cnpg_pg_stat_database_{column}"
            for column in (
                "xact_commit",
                "xact_rollback",
                "blks_read",
                "blks_hit",
                "tup_returned",
                "tup_fetched",
                "tup_inserted",
                "tup_updated",
                "tup_deleted",
                "conflicts",
                "temp_files",
                "temp_bytes",
                "deadlocks",
            )
        ),
        "kubelet_volume_stats_available_bytes",
        "kubelet_volume_stats_capacity_bytes",
        "kube_pod_spec_volumes_persistentvolumeclaims_info",
        "kube_pod_container_status_restarts_total",
    }
)
KUBERNETES_PREFIXES = re.compile(r"\b(?:cnpg|kubelet|kube)_\w+")  # how their names start
SELECTED_METRIC = re.compile(r"([a-zA-Z_:][\w:]*)\s*\{")  # a metric name with its label selector

# Health probes and scrapes are not user traffic: they are left out of rates, errors and latency.
NOT_PROBES = 'route!~"/healthz|/readyz|/metrics|/-/.*"'
RATE = "$__rate_interval"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["eolake"]


@functools.cache
def services_with_dashboards() -> tuple[str, ...]:
    """Every installed service (its manifest), then the gateway: a new service gets its dashboard when it lands
    (regenerate; the drift test reminds you)."""
    from eolake_spec import manifests

    return (*manifests(), "gateway")


@functools.cache
def locally_running() -> frozenset[str]:
    """The services the local stack runs: only their queries can be proven against the embedded platform."""
    from eolake_spec import load_stack

    return frozenset(load_stack("local").enabled_services) | {"gateway"}


# A graph's query: PromQL, or (PromQL, legend).
Target = str | tuple[str, str]


def query(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).ref_id(ref)
    if legend:
        q = q.legend_format(legend)
    return q.instant() if instant else q.range()


class Board:
    """A dashboard as it is built: rows and panels in the order they are added, numbered from 1, every panel on the
    data source variable. A stat panel asks one instant query; a graph asks range queries, lettered A, B, … in order.
    """

    def __init__(self, uid: str, title: str, description: str, tags: list[str]) -> None:
        self.last_id = 0
        self.dashboard = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([*TAGS, *tags])
            .editable()
            .time("now-6h", "now")
            .refresh("30s")
            .timezone("utc")
            .tooltip(model.DashboardCursorSync.CROSSHAIR)
            .with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
        )

    def next_id(self) -> int:
        self.last_id += 1
        return self.last_id

    def row(self, title: str) -> None:
        self.dashboard = self.dashboard.with_row(dashboard.Row(title).id(self.next_id()))

    def stat(
        self,
        title: str,
        expr: str,
        unit: str = "short",
        *,
        width: int = 6,
        steps: list[tuple[float | None, str]] | None = None,
        description: str = "",
    ) -> None:
        panel = stat.Panel().id(self.next_id()).title(title).datasource(DATASOURCE).unit(unit).span(width).height(4)
        panel = panel.with_target(query(expr, instant=True))
        if steps:
            panel = panel.thresholds(
                dashboard.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(value=v, color=c) for v, c in steps])
            )
        self.add(panel, description)

    def graph(
        self,
        title: str,
        targets: list[Target],
        unit: str = "short",
        *,
        width: int = 12,
        height: int = 8,
        description: str = "",
    ) -> None:
        queries = [
            query(*((target,) if isinstance(target, str) else target), ref=chr(ord("A") + i))
            for i, target in enumerate(targets)
        ]
        panel = (
            timeseries.Panel()
            .id(self.next_id())
            .title(title)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(width)
            .height(height)
            .targets(queries)
        )
        self.add(panel, description)

    def add(self, panel: stat.Panel | timeseries.Panel, description: str) -> None:
        self.dashboard = self.dashboard.with_panel(panel.description(description) if description else panel)


def quantile(q: float, buckets: str, by: str = "", window: str = RATE) -> str:
    """The q-quantile of a latency histogram's buckets, per `by` labels."""
    return f"histogram_quantile({q}, sum by (le{f', {by}' if by else ''}) (rate({buckets}[{window}])))"


def percentiles(buckets: str, *qs: float) -> list[Target]:
    return [(quantile(q, buckets), f"p{round(q * 100)}") for q in qs]


# ---------------------------------------------------------------------------------------------------------------
# One dashboard per service: rate, errors, duration, saturation.


def service_dashboard(service: str) -> dashboard.Dashboard:
    sel = f'service="{service}",{NOT_PROBES}'
    job = f"eolake-{service}"
    requests = f"eolake_http_requests_total{{{sel}}}"
    buckets = f"eolake_http_request_duration_seconds_bucket{{{sel}}}"

    def share(status_class: str) -> str:
        """The share of the requests answered with a status of that class (0 without any)."""
        return (
            f'(sum(rate(eolake_http_requests_total{{{sel},status_class="{status_class}"}}[{RATE}])) or vector(0))'
            f" / sum(rate({requests}[{RATE}]))"
        )

    b = Board(
        f"eolake-service-{service}",
        f"eolake / service / {service}",
        f"RED and saturation of the {service} service (job {job}); health probes and scrapes excluded.",
        ["service", service],
    )
    b.row("Availability")
    b.stat("Instances up", f'sum(up{{job="{job}"}})', steps=[(None, "red"), (1, "green")])
    b.stat("Requests per second", f"sum(rate({requests}[{RATE}]))", "reqps")
    b.stat(
        "Server error ratio (5xx)",
        share("5xx"),
        "percentunit",
        steps=[(None, "green"), (0.001, "orange"), (0.01, "red")],
    )
    b.stat("Latency p95", quantile(0.95, buckets), "s", steps=[(None, "green"), (0.25, "orange"), (1, "red")])

    b.row("Rate and errors")
    b.graph(
        "Requests per second by route",
        [(f"sum by (route, method) (rate({requests}[{RATE}]))", "{{method}} {{route}}")],
        "reqps",
    )
    b.graph(
        "Requests per second by status class",
        [(f"sum by (status_class) (rate({requests}[{RATE}]))", "{{status_class}}")],
        "reqps",
    )
    b.graph(
        "Error ratio",
        [(share("5xx"), "server errors (5xx)"), (share("4xx"), "client errors (4xx)")],
        "percentunit",
        description="5xx count against the SLOs; 4xx are the clients' mistakes (or a broken link).",
    )
    b.graph(
        "Server errors by route",
        [
            (
                f'sum by (route) (rate(eolake_http_requests_total{{{sel},status_class="5xx"}}[{RATE}])) or '
                f"(0 * sum by (route) (rate({requests}[{RATE}])))",
                "{{route}}",
            )
        ],
        "reqps",
        description="Every route is listed; 0 when it served no 5xx.",
    )

    b.row("Duration")
    b.graph(
        "Latency percentiles",
        percentiles(buckets, 0.5, 0.95, 0.99),
        "s",
        description="From the latency histogram; its buckets include the SLO thresholds (0.25, 0.5, 1, 2.5 s).",
    )
    b.graph("Latency p95 by route", [(quantile(0.95, buckets, "route"), "{{route}}")], "s")

    b.row("Saturation")
    b.graph(
        "Requests in flight",
        [(f'sum(eolake_http_requests_in_flight{{service="{service}"}})', "in flight")],
        description="Requests being served, probes included: a steady climb means a "
        "dependency is slow or the workers are saturated.",
    )
    b.graph(
        "Scrape duration",
        [(f'max(scrape_duration_seconds{{job="{job}"}})', "scrape")],
        "s",
        description="How long /metrics takes to answer: a slow scrape is an early sign of "
        "an event loop that is blocked.",
    )
    b.graph(
        "Log messages per second by level",
        [(f'sum by (level) (rate(eolake_log_messages_total{{service="{service}"}}[{RATE}]))', "{{level}}")],
        "ops",
        width=24,
        description="Counted by the kit's log handler; the EolakeErrorLogRate alert reads the "
        "error and critical rates.",
    )
    return b.dashboard


# ---------------------------------------------------------------------------------------------------------------
# Database: PostgreSQL on every target, from whichever exporter the target has.
# - Embedded and on-premise: prometheus-postgres-exporter, scrape job "postgres" (Debian
#   prometheus-postgres-exporter 0.11 metric names, checked against its output).
# - Kubernetes: CloudNativePG's instances (cnpg_*), kubelet's volume statistics and kube-state-metrics: the names in
#   KUBERNETES_METRICS. A Prometheus has one family or the other, so a panel for both targets reads
#   `(exporter) or (CloudNativePG)` (either()); WAL archiving, backups and volumes exist on Kubernetes only.

PG = 'job="postgres"'
CNPG = 'namespace=~"eolake.*"'  # eolake's namespaces, as in alerts/kubernetes.yaml
NOT_TEMPLATES = 'datname!~"template0|template1"'
# CloudNativePG's instance volumes: data (with the WAL unless the cluster has a WAL volume) and WAL.
CNPG_VOLUMES = (
    f"on (namespace, persistentvolumeclaim) kube_pod_spec_volumes_persistentvolumeclaims_info"
    f'{{{CNPG},volume=~"pgdata|pg-wal"}}'
)
MAX_CONNECTIONS = f'cnpg_pg_settings_setting{{{CNPG},name="max_connections"}}'


def either(exporter: str, cloudnativepg: str) -> str:
    """One query for every target: the exporter's series, or else CloudNativePG's."""
    return f"({exporter}) or ({cloudnativepg})"


def since(metric: str) -> str:
    """Seconds since the time in a CloudNativePG timestamp gauge, per cluster (0 means never, and is left out)."""
    return f"time() - max by (namespace, job) ({metric}{{{CNPG}}} > 0)"


def per_database(column: str, fn: str = "rate") -> str:
    """A pg_stat_database counter per database, from either exporter."""
    return either(
        f"sum by (datname) ({fn}(pg_stat_database_{column}{{{PG}}}[{RATE}]))",
        f"sum by (datname) ({fn}(cnpg_pg_stat_database_{column}{{{CNPG}}}[{RATE}]))",
    )


def total(column: str) -> tuple[str, str]:
    """A pg_stat_database counter's rate over every database: the exporter's query, then CloudNativePG's."""
    return (
        f"sum(rate(pg_stat_database_{column}{{{PG}}}[{RATE}]))",
        f"sum(rate(cnpg_pg_stat_database_{column}{{{CNPG}}}[{RATE}]))",
    )


def database_dashboard() -> dashboard.Dashboard:
    b = Board(
        "eolake-database",
        "eolake / database",
        "PostgreSQL: postgres_exporter (job postgres) on the embedded and on-premise targets, CloudNativePG "
        "(eolake namespaces) on Kubernetes. The CloudNativePG row is Kubernetes only.",
        ["database", "postgres"],
    )
    b.row("Health")
    b.stat(
        "PostgreSQL up",
        either(f"min(pg_up{{{PG}}})", f"min(cnpg_collector_up{{{CNPG}}})"),
        steps=[(None, "red"), (1, "green")],
        description="1 when PostgreSQL answers (on Kubernetes: every instance of the cluster).",
    )
    b.stat(
        "Connections used",
        either(
            f"sum(pg_stat_database_numbackends{{{PG}}}) / max(pg_settings_max_connections{{{PG}}})",
            f"max(sum by (namespace, pod) (cnpg_backends_total{{{CNPG}}}) / max by (namespace, pod) "
            f"({MAX_CONNECTIONS}))",
        ),
        "percentunit",
        steps=[(None, "green"), (0.75, "orange"), (0.9, "red")],
        description="Backends against max_connections (on Kubernetes: the busiest instance); the spec's connection "
        "budget keeps services below it.",
    )
    b.stat(
        "Database size",
        either(
            f"sum(pg_database_size_bytes{{{PG},{NOT_TEMPLATES}}})",
            f"sum(max by (namespace, datname) (cnpg_pg_database_size_bytes{{{CNPG},{NOT_TEMPLATES}}}))",
        ),
        "bytes",
    )
    b.stat(
        "Longest transaction",
        either(
            f"max(pg_stat_activity_max_tx_duration{{{PG}}})", f"max(cnpg_backends_max_tx_duration_seconds{{{CNPG}}})"
        ),
        "s",
        steps=[(None, "green"), (60, "orange"), (300, "red")],
    )

    b.row("Connections")
    b.graph(
        "Connections vs max_connections",
        [
            (
                either(
                    f"sum(pg_stat_database_numbackends{{{PG}}})",
                    f"max(sum by (namespace, pod) (cnpg_backends_total{{{CNPG}}}))",
                ),
                "connections",
            ),
            (either(f"max(pg_settings_max_connections{{{PG}}})", f"max({MAX_CONNECTIONS})"), "max_connections"),
        ],
        description="On Kubernetes: the busiest instance.",
    )
    b.graph(
        "Connections by state",
        [
            (
                either(
                    f"sum by (state) (pg_stat_activity_count{{{PG}}})",
                    f"sum by (state) (cnpg_backends_total{{{CNPG}}})",
                ),
                "{{state}}",
            )
        ],
    )

    b.row("Activity")
    b.graph(
        "Transactions per second",
        [(per_database("xact_commit"), "commit {{datname}}"), (per_database("xact_rollback"), "rollback {{datname}}")],
        "ops",
        description="On Kubernetes: every instance's, replicas' read-only transactions included.",
    )
    b.graph("Deadlocks", [(per_database("deadlocks", "increase"), "{{datname}}")])
    (hit_pg, hit_cnpg), (read_pg, read_cnpg) = total("blks_hit"), total("blks_read")
    b.graph(
        "Cache hit ratio",
        [(either(f"{hit_pg} / ({hit_pg} + {read_pg})", f"{hit_cnpg} / ({hit_cnpg} + {read_cnpg})"), "hit ratio")],
        "percentunit",
    )
    b.graph(
        "Rows read and written per second",
        [(either(*total(f"tup_{what}")), what) for what in ("fetched", "inserted", "updated", "deleted")],
        "rowsps",
    )

    b.row("Size and locks")
    b.graph(
        "Database size",
        [
            (
                either(
                    f"pg_database_size_bytes{{{PG},{NOT_TEMPLATES}}}",
                    f"max by (namespace, datname) (cnpg_pg_database_size_bytes{{{CNPG},{NOT_TEMPLATES}}})",
                ),
                "{{datname}}",
            )
        ],
        "bytes",
    )
    b.graph(
        "Locks",
        [
            (f"sum by (mode) (pg_locks_count{{{PG}}})", "{{mode}}"),
            (f"sum(cnpg_backends_waiting_total{{{CNPG}}})", "backends waiting for a lock"),
        ],
        description="postgres_exporter counts the locks held by mode; CloudNativePG counts the "
        "backends waiting for a lock another one holds.",
    )
    cloudnativepg_panels(b)
    return b.dashboard


def cloudnativepg_panels(b: Board) -> None:
    """WAL archiving, backups, replicas and volumes: what only CloudNativePG (Kubernetes) reports."""
    b.row("CloudNativePG: WAL archiving, backups, replicas, volumes (Kubernetes)")
    b.stat(
        "Last successful backup",
        since("cnpg_collector_last_available_backup_timestamp"),
        "s",
        steps=[(None, "green"), (26 * 3600, "red")],
        description="Age of the newest successful base backup (daily schedule: PostgresBackupTooOld above 26 h). "
        "No value: no backup yet.",
    )
    b.stat(
        "Last backup failed",
        f"max by (namespace, job) (cnpg_collector_last_failed_backup_timestamp{{{CNPG}}}) > bool "
        f"max by (namespace, job) (cnpg_collector_last_available_backup_timestamp{{{CNPG}}})",
        steps=[(None, "green"), (1, "red")],
        description="1 when the newest backup attempt failed (PostgresBackupFailed), 0 when it succeeded.",
    )
    b.stat(
        "Recovery window",
        since("cnpg_collector_first_recoverability_point"),
        "s",
        description="How far back point-in-time recovery reaches: the oldest backup kept by the retention policy.",
    )
    b.stat(
        "Last WAL archived",
        f"max by (namespace, pod) (cnpg_pg_stat_archiver_seconds_since_last_archival{{{CNPG}}}) and on "
        f"(namespace, pod) cnpg_pg_replication_in_recovery{{{CNPG}}} == 0",
        "s",
        description="Time since the primary last archived a WAL segment. An idle database archives nothing, so "
        "a long time alone is no problem; with segments waiting (the graph below) it is.",
    )
    b.graph(
        "WAL archiving",
        [
            (f"sum by (pod) (rate(cnpg_pg_stat_archiver_archived_count{{{CNPG}}}[{RATE}]))", "{{pod}} archived"),
            (f"sum by (pod) (rate(cnpg_pg_stat_archiver_failed_count{{{CNPG}}}[{RATE}]))", "{{pod}} failed"),
        ],
        "ops",
        description="Segments archived and failed attempts per second (PostgresWALArchivingFailing).",
    )
    b.graph(
        "WAL segments waiting to be archived",
        [(f'sum by (pod) (cnpg_collector_pg_wal_archive_status{{{CNPG},value="ready"}})', "{{pod}} waiting")],
        description="Segments waiting to be archived: above 0 for minutes, archiving lags or fails "
        "(PostgresWALArchivingStalled).",
    )
    b.graph(
        "Replication lag",
        [(f"max by (pod) (cnpg_pg_replication_lag{{{CNPG}}})", "{{pod}}")],
        "s",
        description="Seconds since each replica last replayed a transaction (PostgresReplicationLag above 60 s).",
    )
    b.graph(
        "Volume space used",
        [
            (
                f"1 - (kubelet_volume_stats_available_bytes{{{CNPG}}}"
                f" / kubelet_volume_stats_capacity_bytes{{{CNPG}}} and {CNPG_VOLUMES})",
                "{{persistentvolumeclaim}}",
            )
        ],
        "percentunit",
        description="The instances' data and WAL volumes (PostgresVolumeLowSpace above 80 %).",
    )


# ---------------------------------------------------------------------------------------------------------------
# Download queue: the download service and its workers.


def downloads_dashboard() -> dashboard.Dashboard:
    jobs, duration = "eolake_download_jobs_total", "eolake_download_job_duration_seconds_bucket"
    finished = f'{jobs}{{outcome=~"succeeded|failed"}}'
    b = Board(
        "eolake-downloads",
        "eolake / download queue",
        "Orders and downloads: queue depth, throughput, failures and time to ready.",
        ["downloads"],
    )
    b.row("Queue")
    b.stat(
        "Jobs waiting",
        "sum(eolake_download_queue_depth)",
        steps=[(None, "green"), (100, "orange"), (1000, "red")],
        width=8,
    )
    b.stat(
        "Job failure ratio (1h)",
        f'(sum(rate({jobs}{{outcome="failed"}}[1h])) or vector(0)) / sum(rate({finished}[1h]))',
        "percentunit",
        width=8,
        steps=[(None, "green"), (0.01, "orange"), (0.05, "red")],
        description="Failed over finished (succeeded or failed); cancelled jobs count for neither.",
    )
    b.stat(
        "Time to ready p95 (1h)",
        quantile(0.95, duration, window="1h"),
        "s",
        width=8,
        steps=[(None, "green"), (300, "orange"), (600, "red")],
    )
    b.graph("Queue depth", [("sum(eolake_download_queue_depth)", "waiting")])
    b.graph("Jobs finished per second by outcome", [(f"sum by (outcome) (rate({jobs}[{RATE}]))", "{{outcome}}")], "ops")
    b.graph("Time to ready", percentiles(duration, 0.5, 0.95), "s")
    return b.dashboard


# ---------------------------------------------------------------------------------------------------------------
# Platform overview: targets, SLOs and error budgets.


@functools.cache
def slo_definitions() -> tuple[dict, object]:
    """monitoring/slos.yaml through monitoring/generate.py, which owns the SLI queries (one definition of each)."""
    spec = importlib.util.spec_from_file_location("eolake_monitoring_generate", MONITORING / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load(MONITORING / "slos.yaml"), module


def slo_panels(b: Board) -> None:
    slos, sli = slo_definitions()
    period = slos["period"]
    b.row(f"SLOs over {period}")
    for slo in slos["slos"]:
        objective, ratio = slo["objective"], sli.error_ratio(slo, period)
        about = (
            f"{slo['title']}: objective {objective:.2%} of {slo['events']} over {period} "
            f"(monitoring/slos.yaml, {slo['name']})."
        )
        b.stat(
            f"{slo['title']}: SLI over {period}",
            f"1 - ({ratio})",
            "percentunit",
            width=4,
            description=about,
            steps=[(None, "red"), (objective, "green")],
        )
        b.stat(
            f"{slo['title']}: error budget left",
            f"1 - ({ratio}) / (1 - {objective})",
            "percentunit",
            width=4,
            description=f"{about} 100 %: no bad event yet; 0 or less: the budget is spent.",
            steps=[(None, "red"), (0, "orange"), (0.5, "green")],
        )
    burn = "slo:sli_error:ratio_rate{} / on (slo) (1 - slo:objective:ratio)"
    b.graph(
        "Burn rate by SLO",
        [(burn.format(w), f"{{{{slo}}}} {w}") for w in ("1h", "6h")],
        description="1 spends exactly the budget over the period; the pages fire at 14.4 (1h and 5m) "
        "and 6 (6h and 30m), the ticket at 1 (3d and 6h). From the recording rules.",
    )
    b.graph("Error ratio by SLO (5m)", [("slo:sli_error:ratio_rate5m", "{{slo}}")], "percentunit")


def overview_dashboard(services: list[str]) -> dashboard.Dashboard:
    b = Board(
        "eolake-overview",
        "eolake / platform overview",
        "Is anyone hurting? Targets up, the SLOs and their error budgets, then traffic per service.",
        ["overview", "slo"],
    )
    b.row("Health")
    b.stat("Targets down", "count(up == 0) or vector(0)", steps=[(None, "green"), (1, "red")])
    b.stat(
        "Alerts firing",
        'count(ALERTS{alertstate="firing",alertname!="Watchdog"}) or vector(0)',
        steps=[(None, "green"), (1, "red")],
        description="Watchdog is left out: it always fires, to prove the pipeline works.",
    )
    b.stat("Requests per second", f"sum(rate(eolake_http_requests_total{{{NOT_PROBES}}}[{RATE}]))", "reqps")
    b.stat("PostgreSQL up", 'min(pg_up{job="postgres"})', steps=[(None, "red"), (1, "green")])
    b.graph("Targets up by job", [("min by (job) (up)", "{{job}}")], width=24, height=6)
    slo_panels(b)

    b.row("Per service")
    per_service = f'{NOT_PROBES},service=~"{"|".join(services)}"'
    requests = f"eolake_http_requests_total{{{per_service}}}"
    b.graph(
        "Requests per second by service",
        [(f"sum by (service) (rate({requests}[{RATE}]))", "{{service}}")],
        "reqps",
        width=8,
    )
    b.graph(
        "Server error ratio by service",
        [
            (
                f'(sum by (service) (rate(eolake_http_requests_total{{{per_service},status_class="5xx"}}[{RATE}])) '
                f"or 0 * sum by (service) (rate({requests}[{RATE}]))) / "
                f"sum by (service) (rate({requests}[{RATE}]))",
                "{{service}}",
            )
        ],
        "percentunit",
        width=8,
    )
    b.graph(
        "Latency p95 by service",
        [(quantile(0.95, f"eolake_http_request_duration_seconds_bucket{{{per_service}}}", "service"), "{{service}}")],
        "s",
        width=8,
    )
    return b.dashboard


DASHBOARDS = {
    "overview": lambda services: overview_dashboard(services),
    "database": lambda services: database_dashboard(),
    "downloads": lambda services: downloads_dashboard(),
}


def build_all() -> dict[str, dict]:
    """File name → dashboard JSON (as plain data)."""
    services = services_with_dashboards()
    builders = {f"{name}.json": make(services) for name, make in DASHBOARDS.items()}
    builders |= {f"service-{name}.json": service_dashboard(name) for name in services}
    return {
        name: mark_not_local(layout(json.loads(json.dumps(b.build(), cls=JSONEncoder))))
        for name, b in sorted(builders.items())
    }


def mark_not_local(dashboard_json: dict) -> dict:
    """Say in the description of each panel that cannot have data locally why (its first query's reason)."""
    for panel in dashboard_json.get("panels", []):
        exprs = [t["expr"] for t in panel.get("targets") or [] if t.get("expr")]
        reasons = [not_local_reason(expr) for expr in exprs]
        if reasons and all(reasons):
            kubernetes = all(kubernetes_only_reason(expr) for expr in exprs)
            note = f"{'Kubernetes only' if kubernetes else 'No data locally'}: {reasons[0]}."
            panel["description"] = f"{panel.get('description', '')} {note}".strip()
    return dashboard_json


def layout(dashboard_json: dict) -> dict:
    """Place the panels left to right in the order they were added, a new line when one does not fit in the 24
    columns, and each row on a line of its own (the SDK's placement lets a wide panel overflow the grid)."""
    x = y = height = 0
    for panel in dashboard_json.get("panels", []):
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            x, y, height = 0, y + height, 0
        grid["x"], grid["y"] = x, y
        if panel["type"] == "row":
            y += grid["h"]
        else:
            x, height = x + grid["w"], max(height, grid["h"])
    return dashboard_json


def render(dashboard_json: dict) -> str:
    return json.dumps(dashboard_json, indent=2, sort_keys=True) + "\n"


def kubernetes_only_reason(expr: str) -> str | None:
    """Why a query can only have data on Kubernetes, or None: every metric it reads is in KUBERNETES_METRICS.

    A query for both targets, `(exporter) or (CloudNativePG)`, also reads the exporter's metrics: None.
    """
    metrics = SELECTED_METRIC.findall(expr)
    if metrics and set(metrics) <= KUBERNETES_METRICS:
        return (
            f"reads {metrics[0]}, which only the Kubernetes target exports (CloudNativePG, kubelet, "
            "kube-state-metrics); the embedded platform has prometheus-postgres-exporter instead"
        )
    return None


def not_local_reason(expr: str) -> str | None:
    """Why a query (of a panel or a rule) cannot have data on the embedded platform, or None when it must.

    It reads only metrics of the Kubernetes target (kubernetes_only_reason), or selects a service (service="tiles")
    or an SLO (slo="tile-latency") whose service the local stack does not run. tests/test_monitoring_e2e.py proves
    every query without a reason against the running platform.
    """
    if reason := kubernetes_only_reason(expr):
        return reason
    missing = set(services_with_dashboards()) - locally_running()
    slos, _ = slo_definitions()
    missing_slos = {s["name"]: s["service"] for s in slos["slos"] if s["service"] in missing}
    for label, value in re.findall(r'\b(service|slo)\s*=\s*"([^"]*)"', expr):
        if label == "service" and value in missing:
            return f"selects service {value!r}, which the local stack does not run"
        if label == "slo" and value in missing_slos:
            return f"selects SLO {value!r} of service {missing_slos[value]!r}, which the local stack does not run"
    return None


def panel_queries(dashboard_json: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel, rows included."""
    found = []
    for panel in dashboard_json.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets") or []:
                if target.get("expr"):
                    found.append((inner.get("title", ""), target["expr"]))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing them")
    args = parser.parse_args(argv)
    expected = {name: render(d) for name, d in build_all().items()}
    if args.check:
        stale = sorted(n for n, text in expected.items() if not (HERE / n).exists() or (HERE / n).read_text() != text)
        extra = sorted(p.name for p in HERE.glob("*.json") if p.name not in expected)
        for name in stale + extra:
            print(f"{name}: differs from the generator's output", file=sys.stderr)
        if stale or extra:
            print("run python monitoring/dashboards/generate.py", file=sys.stderr)
            return 1
        return 0
    for path in HERE.glob("*.json"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        (HERE / name).write_text(text)
    print(f"wrote {len(expected)} dashboards to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
