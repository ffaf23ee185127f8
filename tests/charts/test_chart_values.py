"""values.yaml, values.schema.json and the README's table stay one thing; bad values are refused.

The schema is generated from tests/charts/values_model.py (Dagster's way); these tests fail when
the committed schema or README table is stale, when values.yaml and the models disagree, and
when Helm would accept a value the chart cannot use.
"""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.charts import values_model
from tests.charts.rendering import CHART, DIGEST, REPO, merge, render

REGENERATE = "run `python -m tests.charts.values_model` and commit the result"


def test_values_schema_is_generated_from_the_models() -> None:
    assert values_model.SCHEMA_PATH.read_text() == values_model.schema_text(), REGENERATE


def test_readme_values_table_is_generated_from_the_models() -> None:
    readme = values_model.README_PATH.read_text()
    assert values_model.readme_with_table(readme) == readme, REGENERATE


def test_values_yaml_holds_exactly_the_models_defaults() -> None:
    """Every key of values.yaml is typed in the schema, and no default differs between them."""
    written = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft202012Validator(values_model.schema()).validate(written)
    assert written == values_model.Values().model_dump(mode="json")


def test_the_schema_also_works_for_helm_3s_draft_07_validator() -> None:
    """Helm 4 validates with a 2020-12 validator, Helm 3 with a draft-07 one: both must agree."""
    schema = json.loads(values_model.SCHEMA_PATH.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    assert not list(validator.iter_errors(yaml.safe_load((CHART / "values.yaml").read_text())))
    assert list(validator.iter_errors({"gateway": {"replicas": "two"}}))
    assert list(validator.iter_errors({"stream": {"maxAge": "7 days"}}))


def test_every_value_is_described() -> None:
    rows = values_model.values_table().splitlines()[2:]
    undocumented = [row.split("|")[1].strip() for row in rows if not row.split("|")[4].strip()]
    assert undocumented == []


def _refusal(values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"replicas": "two"}}, "at '/gateway/replicas': got string, want integer"),
        ({"gateway": {"replica": 2}}, "at '/gateway': additional properties 'replica' not allowed"),
        ({"auth": {"method": "hs256"}}, "at '/auth/method': value must be one of"),
        ({"stream": {"maxAge": "7 days"}}, "'7 days' does not match pattern"),
        ({"stream": {"replicas": 7}}, "at '/stream/replicas'"),
        ({"nats": {"urls": ["http://nats:4222"]}}, "at '/nats/urls/0'"),
        ({"nats": {"urls": []}}, "at '/nats/urls'"),
        ({"gateway": {"drainSeconds": -1}}, "at '/gateway/drainSeconds'"),
        ({"gateway": {"extraConfig": {"GATEWAY_PORT": "1"}}}, "at '/gateway/extraConfig'"),
        ({"events": {"extra": ["Incident"]}}, "at '/events/extra/0'"),
        ({"images": {"gateway": {"digest": "latest"}}}, "at '/images/gateway/digest'"),
        ({"gateway": {"resources": {"requests": None}}}, "missing property 'requests'"),
    ],
)
def test_a_value_the_schema_does_not_allow_is_refused_with_its_path(
    values: dict[str, Any], message: str
) -> None:
    refused = _refusal(values)
    assert "values don't meet the specifications of the schema" in refused
    assert message in refused


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"gateway": {"terminationGracePeriodSeconds": 20}},
            "gateway.terminationGracePeriodSeconds (20) must exceed gateway.preStopSeconds"
            " + gateway.drainSeconds (25)",
        ),
        ({"auth": {"method": "jwks"}}, "auth.method=jwks needs auth.jwksUrl"),
        ({"auth": {"method": "publicKey"}}, "auth.method=publicKey needs auth.publicKey"),
        (
            {"nats": {"credentials": {"gateway": {"method": "password"}}}},
            "nats.credentials.gateway.password (or nats.credentials.gateway.existingSecret)"
            " is required with method password",
        ),
        ({"nats": {"tls": {"enabled": True}}}, "nats.tls.enabled needs nats.tls.secretName"),
        (
            {"gateway": {"extraConfig": {"TIDINGS_GATEWAY_DEMO": "true"}}},
            "TIDINGS_GATEWAY_DEMO is refused: the demo mode mints tokens for anyone",
        ),
    ],
)
def test_combinations_the_schema_cannot_express_fail_with_the_value_to_fix(
    values: dict[str, Any], message: str
) -> None:
    assert message in _refusal(values)


def test_the_production_values_in_the_operators_guide_render() -> None:
    guide = (REPO / "docs" / "deploy.md").read_text()
    block = guide.split("A production values file:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    rendered = render(yaml.safe_load(block.replace("sha256:…", DIGEST)))  # the placeholders
    assert rendered.get("Ingress", "gateway")["spec"]["rules"][0]["host"] == "tidings.example.com"
    config = rendered.data("ConfigMap", "tidings-gateway")
    assert config["TIDINGS_AUTH_JWKS_URL"] == "https://id.example.com/.well-known/jwks.json"
    assert rendered.of_kind("Secret") == []  # everything secret comes from the operator


def test_dev_values_used_by_skaffold_pass_the_schema() -> None:
    dev = yaml.safe_load((CHART / "values-dev.yaml").read_text())
    rendered = render(merge(dev, {}))
    assert rendered.get("Deployment", "gateway")["spec"]["replicas"] == 1
    jsonschema.Draft202012Validator(json.loads(values_model.SCHEMA_PATH.read_text())).validate(
        merge(yaml.safe_load((CHART / "values.yaml").read_text()), dev)
    )
