"""The platform spec: every stack in stacks/ is valid, and invalid stack files say where and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eolake.cli import main as cli
from eolake_spec import STACKS_DIR, SpecError, load_stack, manifest

STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in STACKS_DIR.glob("Pulumi.*.yaml"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "Pulumi.test.yaml"
    path.write_text(text)
    return path


def platform_yaml(body: str) -> str:
    indented = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"config:\n  eolake:platform:\n{indented}\n"


def test_every_stack_is_valid():
    assert {"local", "dev", "staging", "prod"} <= set(STACKS)
    for stack in STACKS:
        platform = load_stack(stack)
        used, budget = platform.connection_budget()
        assert 0 < used <= budget
        assert platform.services["catalog"].path == "/stac"


def test_production_is_highly_available():
    prod = load_stack("prod")
    assert all(s.replicas >= 2 for s in prod.enabled_services.values())
    assert not prod.database.embedded


def test_service_environment_translation():
    env = load_stack("local").service_env("catalog")
    assert env["EOLAKE_CATALOG_ROOT_PATH"] == "/stac"
    assert env["EOLAKE_CATALOG_PUBLIC_URL"] == "http://127.0.0.1:8080"
    assert all(key.startswith("EOLAKE_CATALOG_") for key in env)
    assert not any("PASSWORD" in key for key in env)


def test_the_services_that_can_read_from_a_replica_do_where_the_target_has_one(monkeypatch):
    from eolake_catalog.settings import CatalogSettings

    assert not load_stack("local").reads_from_replica("catalog"), "no replica in the local stack"
    assert load_stack("staging").reads_from_replica("catalog"), "CloudNativePG instances: 2"
    assert not load_stack("dev").reads_from_replica("catalog"), "one instance: the primary"
    document = load_stack("local").model_dump(mode="json")
    document["database"] |= {"replica": {}, "max_replica_lag_seconds": 2.5}
    platform = type(load_stack("local")).model_validate(document)
    readers = {name for name in platform.enabled_services if platform.reads_from_replica(name)}
    assert "catalog" in readers and "downloads" not in readers, "orders are read where they were written"
    for key, value in platform.service_env("catalog").items():
        monkeypatch.setenv(key, value)
    assert CatalogSettings().max_replica_lag_seconds == 2.5
    assert "EOLAKE_DOWNLOADS_MAX_REPLICA_LAG_SECONDS" not in platform.service_env("downloads")


def test_priorities_and_the_offline_tier_reach_search_and_downloads(monkeypatch, tmp_path):
    from eolake_downloads.settings import DownloadsSettings
    from eolake_search.settings import SearchSettings

    platform = load_stack("local")
    assert platform.priorities == {"garonne-wse": ["hydrology", "local"]}
    for name, settings in (("search", SearchSettings), ("downloads", DownloadsSettings)):
        for key, value in platform.service_env(name).items():
            monkeypatch.setenv(key, value)
        assert settings().priorities == platform.priorities, name
    downloads = DownloadsSettings(offline_path=tmp_path / "offline")
    assert downloads.offline_delay_seconds == platform.storage.offline.delay_seconds == 3
    assert downloads.priority("garonne-wse") == ["hydrology", "local"] and downloads.priority("naip") == []
    assert platform.storage.offline_dir(tmp_path / "data") == tmp_path / "offline"
    assert "EOLAKE_CATALOG_PRIORITIES" not in platform.service_env("catalog")


def test_cors_origins_reach_every_service_and_its_settings(monkeypatch):
    platform = load_stack("local").model_copy(update={"cors_origins": ["https://maps.example.org"]})
    for name in platform.enabled_services:
        key = f"EOLAKE_{name.upper()}_CORS_ORIGINS"
        monkeypatch.setenv(key, platform.service_env(name)[key])
        assert manifest(name).settings_class()().cors_origins == ["https://maps.example.org"], name


def test_web_view_polls_exactly_the_enabled_services():
    platform = load_stack("local")
    services = json.loads(platform.service_env("web")["EOLAKE_WEB_SERVICES"])
    expected = {n: s.path for n, s in platform.enabled_services.items() if n != "web"}
    assert services == expected and services["catalog"] == "/stac"


def test_errors_name_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        platform_yaml("""
name: local
base_url: http://127.0.0.1:8080
services:
  catalog:
    replicas: 0
    resources:
      cpu_limit: lots
"""),
    )
    with pytest.raises(SpecError) as info:
        load_stack(path)
    text = str(info.value)
    assert f"{path}:7: services.catalog.replicas: Input should be greater than or equal to 1" in text
    assert f"{path}:9: services.catalog.resources.cpu_limit:" in text and "Kubernetes quantity" in text


@pytest.mark.parametrize(
    "body, expected",
    [
        ("name: x\nbase_url: not-a-url\nservices: {}", "base_url"),
        ("name: x\nbase_url: http://h\nservices: {bogus: {}}", "services.bogus"),
        ("name: x\nbase_url: http://h\nservices: {catalog: {path: stac/}}", "must be / or like /stac"),
        ("name: x\nbase_url: http://h\nservices: {catalog: {}, tiles: {path: /stac}}", "share the path /stac"),
        ("name: x\nbase_url: http://h/sub\nservices: {}", "must not have a path"),
        (
            "name: x\nbase_url: http://h\nservices: {catalog: {replicas: 10, workers: 4, pool_size: 10}}",
            "connection budget exceeded: services need 400",
        ),
        ("name: x\nbase_url: http://h\nservices: {}\nstorage: {kind: s3}", "needs a bucket"),
        ("name: x\nbase_url: http://h\nservices: {}\nauth: {oidc_issuer: https://id}", "oidc_audience"),
        ("name: x\nbase_url: http://h\nservices: {}\ndatabase: {colour: blue}", "database.colour: Extra inputs"),
        (
            "name: x\nbase_url: http://h\nservices: {}\nstorage: {kind: s3, bucket: b, offline: {}}",
            "storage.offline is restored into local storage",
        ),
        (
            "name: x\nbase_url: http://h\nservices: {}\npriorities: {c: [local, nowhere]}",
            "priorities.c: nowhere not an enabled provider",
        ),
        ("name: x\nbase_url: http://h\nservices: {}\npriorities: {c: [local, local]}", "named twice"),
        (
            "name: x\nbase_url: http://h\nservices: {}\ndatabase: {embedded: false, replica: {host: db-ro}}",
            "database: Value error, database.replica.port: a replica that is not embedded needs its port",
        ),
        (
            "name: x\nbase_url: http://h\nservices: {}\ndatabase: {max_replica_lag_seconds: 0}",
            "database.max_replica_lag_seconds",
        ),
    ],
)
def test_invalid_specs(tmp_path, body, expected):
    with pytest.raises(SpecError) as info:
        load_stack(write(tmp_path, platform_yaml(body)))
    assert expected in str(info.value)


def test_yaml_syntax_error_has_line(tmp_path):
    path = write(tmp_path, "config:\n  eolake:platform:\n    name: [unclosed\n")
    with pytest.raises(SpecError) as info:
        load_stack(path)
    assert f"{path}:" in str(info.value) and "yaml" in str(info.value)


def test_missing_platform_key(tmp_path):
    with pytest.raises(SpecError, match="config.eolake:platform: missing"):
        load_stack(write(tmp_path, "config:\n  other:key: 1\n"))


def test_unknown_stack_lists_known_ones():
    with pytest.raises(SpecError, match="known stacks: .*local"):
        load_stack("nope")


def test_cli_validate_exit_codes(tmp_path, capsys):
    assert cli(["validate", "--stack", "local"]) == 0
    assert "valid" in capsys.readouterr().out
    bad = write(tmp_path, platform_yaml("name: x\nbase_url: http://h\nservices: {catalog: {workers: 0}}"))
    assert cli(["validate", "--stack", str(bad)]) == 2
    assert "services.catalog.workers" in capsys.readouterr().err


def test_limits_reach_each_service_with_its_overrides(tmp_path):
    from eolake_spec import Limits

    platform = load_stack("local")
    tiles = Limits.model_validate_json(platform.service_env("tiles")["EOLAKE_TILES_LIMITS"])
    catalog = Limits.model_validate_json(platform.service_env("catalog")["EOLAKE_CATALOG_LIMITS"])
    assert tiles.body_bytes == 65536 and catalog.body_bytes == platform.limits.body_bytes == 1024 * 1024
    assert catalog.postgres_options()["statement_timeout"] == "20000"


def test_bad_limits_are_named(tmp_path):
    base = "name: local\nbase_url: http://127.0.0.1:8080\nservices:\n  catalog:\n    limits: {%s}\n"
    with pytest.raises(SpecError) as unknown:
        load_stack(write(tmp_path, platform_yaml(base % "body_size: 10")))
    assert "unknown limits: body_size" in str(unknown.value)
    with pytest.raises(SpecError) as budget:
        load_stack(write(tmp_path, platform_yaml(base % "statement_seconds: 60")))
    assert "services.catalog.limits" in str(budget.value) and "below request_seconds" in str(budget.value)


def test_recursive_and_exploding_yaml_aliases_are_one_line_errors(tmp_path):
    recursive = write(tmp_path, "config:\n  eolake:platform: &a\n    name: x\n    services: {catalog: *a}\n")
    with pytest.raises(SpecError) as loop:
        load_stack(recursive)
    assert "recursive YAML structure" in str(loop.value)
    laughs = ["config:", "  eolake:platform:", "    a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    laughs += [f"    a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(SpecError) as laughing:
        load_stack(write(tmp_path, "\n".join(laughs) + "\n"))
    assert "expands to more than 100000 nodes" in str(laughing.value)
    shared = (
        "config:\n  eolake:platform:\n    name: x\n    base_url: http://127.0.0.1:8080\n"
        "    services: {catalog: &s {workers: 1}, search: *s, thesaurus: *s}\n"
    )
    assert load_stack(write(tmp_path, shared)).services["search"].workers == 1  # a shared node is no loop
