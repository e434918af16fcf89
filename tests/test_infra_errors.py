"""Stacks the Kubernetes program must refuse, with a message naming the problem, before creating anything."""

from __future__ import annotations

import pytest
from infra_program import config, render, write_stack

from eolake.cli import main
from eolake_spec import SpecError


def refused(path, error=config.InfraError) -> str:
    monitor = render._Monitor()
    with pytest.raises(error) as caught:
        render.run(path, monitor=monitor)
    assert monitor.recorded == [], "nothing may be created from a refused stack"
    return str(caught.value)


def test_impossible_connection_budget_against_postgres(tmp_path):
    def edit(p):
        p["kubernetes"]["autoscaling"]["catalog"]["max_replicas"] = 40

    message = refused(write_stack(tmp_path, "prod", edit))
    assert "connection budget" in message and "(autoscaling.max_replicas + 1 surge)" in message
    # catalog (40 + 1) × 4 workers × 5 = 820, tiles (4 + 1) × 2 × 4 = 40, downloads (2 + 1) × 1 × 4 = 12, and its
    # job workers (4 + 1) × (4 connections + 4 jobs) = 40
    assert "912 connections" in message and "is 390" in message


def test_impossible_connection_budget_against_the_pooler(tmp_path):
    def edit(p):
        p["kubernetes"]["pooler"] = {"instances": 2, "max_client_connections": 50}

    message = refused(write_stack(tmp_path, "prod", edit))
    assert "the pooler accepts 50 with one of its 2 instance(s) down" in message


def test_budget_the_spec_already_refuses(tmp_path):
    def edit(p):
        p["services"]["catalog"]["replicas"] = 50

    assert "connection budget exceeded" in refused(write_stack(tmp_path, "prod", edit), SpecError)


def test_unknown_service_name(tmp_path):
    def edit(p):
        p["services"]["tilez"] = {}

    message = refused(write_stack(tmp_path, "dev", edit), SpecError)
    assert "services.tilez" in message


def test_autoscaling_of_a_worker_that_does_not_exist(tmp_path):
    def edit(p):
        p["kubernetes"]["autoscaling"]["web-worker"] = {"max_replicas": 2}

    message = refused(write_stack(tmp_path, "dev", edit))
    assert "kubernetes.autoscaling.web-worker: no such service or worker" in message
    assert "Pulumi.dev-edited.yaml" in message


def test_service_without_image(tmp_path):
    def edit(p):
        del p["kubernetes"]["images"]["catalog"]

    assert "kubernetes.images.catalog: missing" in refused(write_stack(tmp_path, "staging", edit))


def test_backups_without_credentials_secret(tmp_path):
    def edit(p):
        del p["kubernetes"]["postgres"]["backup"]["credentials_secret"]

    message = refused(write_stack(tmp_path, "prod", edit), SpecError)
    assert "kubernetes.postgres.backup" in message and "credentials_secret" in message


def test_latest_tag(tmp_path):
    def edit(p):
        p["kubernetes"]["images"]["catalog"]["tag"] = "latest"

    assert "kubernetes.images.catalog.tag" in refused(write_stack(tmp_path, "prod", edit), SpecError)


def test_stack_without_kubernetes_section():
    assert "kubernetes: missing" in refused("local")


def test_cli_reports_the_problem(tmp_path, capsys):
    def edit(p):
        p["kubernetes"]["autoscaling"]["catalog"]["max_replicas"] = 40

    path = write_stack(tmp_path, "prod", edit)
    assert main(["render", "--stack", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "connection budget" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
