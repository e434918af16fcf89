"""The downloads service's manifest: what the platform and every deployment target know of it."""

from eolake_spec.manifest import ServiceManifest, Worker

MANIFEST = ServiceManifest(
    name="downloads",
    title="Downloads",
    summary="orders, staging workers and resumable downloads",
    path="/downloads",
    port=8087,
    settings="eolake_downloads.settings:DownloadsSettings",
    database=True,
    schema="eolake_downloads.schema",
    worker=Worker("eolake_downloads.worker", metrics_port=9090, queue_metric="eolake_download_queue_depth"),
    calls=("catalog",),
    storage="write",
    secrets=("storage",),
    rate_limited=(r"POST /(orders|retrievals)$",),
    # Orders and retrievals (staging from a slow tier) also have quotas; this bounds the rate of asking.
    rate_limit=(2, 20),
)
