"""Point-in-time recovery is a stack change: prod with `cluster_name: eolake-db-2` and `recovery` (source eolake-db,
a target time) renders a new Cluster restored from the old one's object-store backups, the pooler and the schema
Jobs follow the new name, and the NetworkPolicies give the restored cluster everything it needs, nothing more."""

from __future__ import annotations

import re
from datetime import datetime

import netpol
import pytest
import yaml
from infra_program import RECOVERY_TARGET, program, render, rendered, variant, write_stack

from eolake.paths import REPO_ROOT
from eolake_infra.config import InfraError, resolve
from eolake_spec import SpecError, load_stack

OLD, NEW = "eolake-db", "eolake-db-2"
# The damaged cluster, left running by Pulumi (retain_on_delete) until the operator deletes it.
OLD_INSTANCES = netpol.external(
    OLD, "eolake", {"cnpg.io/cluster": OLD, "cnpg.io/podRole": "instance"}, netpol.CNPG_INSTANCE_PORTS
)
STORAGE = netpol.ip("203.0.113.10/32", ("TCP", 443), name="s3")
API_SERVER = netpol.ip("10.96.0.1/32", ("TCP", 443), ("TCP", 6443), name="api-server")


@pytest.fixture(scope="module")
def recovery():
    return program(variant("prod-recovery"))


def manifests(stack: str) -> list[dict]:
    return [yaml.safe_load(text) for name, text in rendered(stack).items() if not name.startswith("helm/")]


def test_new_cluster_restores_the_old_ones_backups(recovery):
    backup = load_stack("prod").kubernetes.postgres.backup
    cluster = recovery.one("Cluster", NEW)["spec"]
    assert list(cluster["bootstrap"]) == ["recovery"]
    restore = cluster["bootstrap"]["recovery"]
    assert restore["source"] == OLD and restore["database"] == "eolake" and restore["owner"] == "eolake"
    assert datetime.fromisoformat(restore["recoveryTarget"]["targetTime"]) == datetime.fromisoformat(RECOVERY_TARGET)
    (source,) = cluster["externalClusters"]
    store = source["barmanObjectStore"]
    assert source["name"] == OLD and store["serverName"] == OLD  # <destination>/eolake-db/: the old archive
    assert store["destinationPath"] == backup.destination and store["endpointURL"] == backup.endpoint
    assert store["s3Credentials"]["accessKeyId"] == {"name": backup.credentials_secret, "key": "ACCESS_KEY_ID"}
    # The new cluster archives beside it, under its own name (serverName defaults to the cluster's): never into
    # the archive it restores from.
    assert "serverName" not in cluster["backup"]["barmanObjectStore"]
    assert not [c for c in recovery.of_kind("Cluster") if c["metadata"]["name"] == OLD]


def test_cluster_is_retained_and_awaited(recovery):
    resource = recovery.recorded("Cluster", NEW)
    notes = recovery.one("Cluster", NEW)["metadata"]["annotations"]
    assert notes["pulumi.com/waitFor"] == "condition=Ready" and int(notes["pulumi.com/timeoutSeconds"]) >= 3600
    pooler = recovery.recorded("Pooler", "eolake-db-pooler")
    assert resource.urn in pooler.dependencies  # the pooler switches once the restored cluster is Ready
    # CloudNativePG refuses a new cluster reference on a Pooler: Pulumi replaces it under the same name.
    assert pooler.replace_on_changes == ["spec.cluster.name"] and pooler.delete_before_replace


def test_everything_follows_the_new_name(recovery):
    assert recovery.one("Pooler", "eolake-db-pooler")["spec"]["cluster"]["name"] == NEW
    (scheduled,) = recovery.of_kind("ScheduledBackup")
    assert scheduled["spec"]["cluster"]["name"] == NEW and scheduled["metadata"]["name"] == f"{NEW}-daily"
    for job in recovery.of_kind("Job"):
        env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PGHOST"]["value"] == f"{NEW}-rw", job["metadata"]["name"]
        assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{NEW}-superuser"
    text = "".join(rendered(variant("prod-recovery")).values())
    assert f"{OLD}-rw" not in text and f"{OLD}-superuser" not in text


def test_restored_cluster_reachable_under_the_policies():
    stack = variant("prod-recovery")

    def named(workload: str) -> str:  # the Jobs' names end with a hash of their image
        return "migrate-job" if workload.startswith(("pgstac-migrate-", "downloads-schema-")) else workload

    found = {
        (named(s), named(d), port)
        for s, d, protocol, port in netpol.flows(
            manifests(stack), extra=(netpol.PROMETHEUS, netpol.CNPG_OPERATOR, OLD_INSTANCES, STORAGE, API_SERVER)
        )
        if protocol == "TCP"
    }
    needed = {
        (f"{NEW}-full-recovery", "s3", 443),  # the base backup and the WAL, from the object store
        (f"{NEW}-full-recovery", "api-server", 6443),
        (NEW, "s3", 443),  # its own WAL archive and backups
        (NEW, "api-server", 6443),  # the instance manager
        (NEW, NEW, 5432),  # replication
        ("cnpg-operator", NEW, 8000),
        ("cnpg-operator", NEW, 5432),
        ("eolake-db-pooler", NEW, 5432),
        ("prometheus", NEW, 9187),
        ("migrate-job", NEW, 5432),  # the migration Jobs (pgstac and downloads' schema) connect directly
        ("catalog", "eolake-db-pooler", 5432),
    }
    assert not needed - found, f"needed but blocked: {sorted(needed - found)}"
    # Nothing of the namespace reaches the old cluster; services reach the database only through the pooler.
    assert not {(s, d, p) for s, d, p in found if d == OLD and s not in ("cnpg-operator", OLD)}
    assert (NEW, NEW, 8000) not in found  # the status port is the operator's
    services = set(program(stack).context.services)
    assert not {(s, d, p) for s, d, p in found if s in services and d == NEW}


def test_committed_stacks_bootstrap_a_new_database():
    for stack in ("dev", "staging", "prod"):
        cluster = program(stack).one("Cluster", OLD)["spec"]
        assert list(cluster["bootstrap"]) == ["initdb"] and "externalClusters" not in cluster


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda pg: pg | {"recovery": {"source": OLD}}, "the cluster itself"),
        (
            lambda pg: pg | {"cluster_name": NEW, "recovery": {"source": OLD, "target_time": "2026-01-31T10:41:00"}},
            "needs a time zone",
        ),
        (
            lambda pg: (
                {k: v for k, v in pg.items() if k != "backup"} | {"cluster_name": NEW, "recovery": {"source": OLD}}
            ),
            "where the source's backups are",
        ),
        (lambda pg: pg | {"cluster_name": "Eolake_DB"}, "cluster_name"),
    ],
)
def test_impossible_recoveries_fail_in_the_spec(tmp_path, edit, message):
    def change(platform):
        platform["kubernetes"]["postgres"] = edit(platform["kubernetes"]["postgres"])

    with pytest.raises(SpecError, match=message) as error:
        load_stack(write_stack(tmp_path, "prod", change))
    assert "kubernetes.postgres" in str(error.value)


def test_cluster_and_pooler_need_different_names(tmp_path):
    def clash(platform):
        platform["kubernetes"]["postgres"]["cluster_name"] = platform["database"]["host"]

    with pytest.raises(InfraError, match="kubernetes.postgres.cluster_name: 'eolake-db-pooler'"):
        resolve(load_stack(write_stack(tmp_path, "prod", clash)), "prod")


def runbook_change() -> dict:
    """The stack change the PITR runbook shows (its YAML block), without the lines it leaves as they are (`...`)."""
    text = (REPO_ROOT / "monitoring" / "runbooks" / "README.md").read_text()
    section = text.split("## Point-in-time recovery (Kubernetes)", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```yaml\n(.*?)```", section, re.S)
    postgres = yaml.safe_load(block)["kubernetes"]["postgres"]
    return {key: value for key, value in postgres.items() if value != "..."}


def recovery_deployments() -> list[dict]:
    return program(variant("prod-recovery")).of_kind("Deployment")


def test_the_runbook_shows_the_stack_change_the_tests_render(tmp_path):
    """What the runbook tells an operator to write is what test_infra_recovery renders (the target time aside),
    and the spec accepts it as written."""
    change = runbook_change()
    assert change["cluster_name"] == NEW and change["recovery"]["source"] == OLD
    assert set(change) == {"cluster_name", "recovery"} and set(change["recovery"]) == {"source", "target_time"}
    recovering = load_stack(variant("prod-recovery")).kubernetes.postgres
    written = load_stack(write_stack(tmp_path, "prod", lambda p: p["kubernetes"]["postgres"].update(change)))
    assert written.kubernetes.postgres.cluster_name == recovering.cluster_name
    assert written.kubernetes.postgres.recovery.source == recovering.recovery.source
    assert written.kubernetes.postgres.recovery.target_time.utcoffset() is not None
    # Writes stop and resume with one selector: every Deployment of the stack (services, workers), nothing else.
    text = (REPO_ROOT / "monitoring" / "runbooks" / "README.md").read_text()
    selectors = set(re.findall(r"scale deploy -l '([^']+)'", text))
    (selector,) = selectors
    wanted = dict(term.split("=") for term in selector.split(",") if "=" in term)
    absent = [term[1:] for term in selector.split(",") if term.startswith("!")]
    rendered_deployments = recovery_deployments()
    assert rendered_deployments and all(
        wanted.items() <= d["metadata"]["labels"].items() and not set(absent) & set(d["metadata"]["labels"])
        for d in rendered_deployments
    )


def test_dropping_recovery_afterwards_only_touches_the_clusters_bootstrap(recovery, tmp_path):
    """The runbook's last step: `recovery:` removed, `cluster_name` kept. The next `pulumi up` updates nothing but
    the Cluster's bootstrap section (read only when a cluster is created): the Pooler, the Jobs, the policies and
    the Deployments stay as they are, so nothing is replaced."""

    def recovered(platform):
        platform["kubernetes"]["postgres"]["cluster_name"] = NEW

    after = render.documents(render.run(write_stack(tmp_path, "prod", recovered)))
    before = render.documents(recovery.resources)
    assert sorted(after) == sorted(before)
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == [f"cluster-eolake-{NEW}.yaml"]
    was, now = before[changed[0]], after[changed[0]]
    assert list(now["spec"]["bootstrap"]) == ["initdb"] and "externalClusters" not in now["spec"]
    unchanged = ("bootstrap", "externalClusters")
    assert {k: v for k, v in was["spec"].items() if k not in unchanged} == {
        k: v for k, v in now["spec"].items() if k not in unchanged
    }
