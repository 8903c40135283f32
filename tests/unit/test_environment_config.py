from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.loader import EnvironmentConfigError, available_environments, load_environment
from config.model import EnvironmentConfig
from config.routing import RoutingTable, routing_table_for


def test_both_environments_load() -> None:
    assert {"dev", "prod"} <= set(available_environments())
    for name in ("dev", "prod"):
        environment = load_environment(name)
        assert environment.name == name
        assert environment.regions


def test_dev_and_prod_share_no_queue_or_bucket_unless_declared() -> None:
    dev, prod = load_environment("dev"), load_environment("prod")
    shared = dev.resource_names() & prod.resource_names()
    declared = set(dev.shared_with_other_environments) & set(prod.shared_with_other_environments)
    assert shared <= declared, f"dev and prod share undeclared resources: {sorted(shared - declared)}"
    assert dev.resource_prefix != prod.resource_prefix
    assert dev.monitoring.namespace != prod.monitoring.namespace


def test_every_environment_file_is_separate_from_the_others() -> None:
    environments = [load_environment(n) for n in available_environments()]
    for i, first in enumerate(environments):
        for second in environments[i + 1 :]:
            shared = first.resource_names() & second.resource_names()
            declared = set(first.shared_with_other_environments) & set(second.shared_with_other_environments)
            assert shared <= declared, (first.name, second.name, shared)


def test_prod_knows_the_nlm_and_fpl_buckets() -> None:
    prod = load_environment("prod")
    assert prod.bucket("glacier.staging.nlm.bdrc.org").collection == "NLM"
    assert prod.bucket("glacier.staging.fpl.bdrc.org").collection == "FPL"
    assert prod.region_of_bucket("glacier.staging.fpl.bdrc.org").region == "ap-northeast-2"
    with pytest.raises(KeyError, match="not a staging bucket of environment prod"):
        prod.region_of_bucket("glacier.staging.nlm.dev.bdrc.org")


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / "env.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def _dev_document() -> dict:
    return load_environment("dev").model_dump(mode="json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["regions"][0].update(region="Seoul"), "regions.0.region"),
        (lambda d: d["regions"][0].update(queue_name="bad name!"), "regions.0.queue_name"),
        (lambda d: d["regions"][1]["buckets"].append(dict(d["regions"][0]["buckets"][0])), "bucket is listed twice"),
        (lambda d: d["regions"][1].update(queue_name=d["regions"][0]["queue_name"]), "queue name is used twice"),
        (lambda d: d.update(unexpected=1), "unexpected"),
        (lambda d: d["restore"].update(tier="Expedited"), "restore.tier"),
        (lambda d: d["finisher"].pop("archive_root"), "finisher.archive_root"),
    ],
)
def test_invalid_environment_is_rejected_with_file_and_key(tmp_path, mutate, message) -> None:
    document = _dev_document()
    mutate(document)
    path = _write(tmp_path, document)
    with pytest.raises(EnvironmentConfigError) as err:
        load_environment(path=path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_unknown_environment_names_the_known_ones() -> None:
    with pytest.raises(EnvironmentConfigError, match=r"known: .*dev.*prod"):
        load_environment("staging")


def test_environment_selected_by_env_var(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("BDRC_ENV", "prod")
    assert load_environment().name == "prod"
    document = _dev_document()
    document["name"] = "lab"
    monkeypatch.setenv("BDRC_ENV_FILE", str(_write(tmp_path, document)))
    assert load_environment().name == "lab"


def test_oldest_message_alarm_is_derived_from_restore_days() -> None:
    prod = load_environment("prod")
    assert prod.oldest_message_alarm_seconds == prod.restore.days * 86400 * 0.5


def test_routing_table_round_trips_through_the_lambda_environment() -> None:
    dev = load_environment("dev")
    table = routing_table_for(dev, lambda region, name: f"https://sqs.{region}.amazonaws.com/1/{name}")
    again = RoutingTable.from_env(table.to_env())
    route = again.route_for("glacier.staging.fpl.dev.bdrc.org")
    assert route is not None
    assert route.collection == "FPL"
    assert route.queue_url.endswith("bdrc-restore-dev-ap-northeast-2-works")
    assert again.route_for("glacier.staging.fpl.bdrc.org") is None
    assert set(again.root) == {b.name for r in dev.regions for b in r.buckets}


def test_model_is_frozen() -> None:
    dev: EnvironmentConfig = load_environment("dev")
    with pytest.raises(ValueError):
        dev.name = "prod"  # type: ignore[misc]
