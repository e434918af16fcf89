"""The download metrics (names fixed by monitoring/: alerts, SLO rules and dashboards use them)."""

from prometheus_client import Counter, Gauge, Histogram

SERVICE = "downloads"
# Exported by the API process only (workers would repeat the same count and double sum()).
QUEUE_DEPTH = Gauge(
    "eolake_download_queue_depth", "files waiting for or being staged", ["service"], multiprocess_mode="max"
)
JOBS = Counter("eolake_download_jobs", "orders finished, by outcome", ["service", "outcome"])
JOB_DURATION = Histogram(
    "eolake_download_job_duration_seconds",
    "time from order to its files being ready",
    ["service"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 4 * 3600),
)
BYTES_SERVED = Counter("eolake_download_bytes_served", "file bytes sent to clients", ["service"])
BYTES_STAGED = Counter("eolake_download_bytes_staged", "file bytes fetched and published by workers", ["service"])
BYTES_FETCHED = Counter(
    "eolake_download_source_bytes",
    "bytes read from sources by workers (a resumed copy reads only what it lacked)",
    ["service"],
)
FILES = Counter("eolake_download_files", "files staged, by outcome", ["service", "outcome"])
