"""The layer and the package agree: the deployed Powertools is the locked one the tests run, by construction.

The layer is built from requirements/dev.lock's pins (``infra.cdk.lambda_asset.build_layer``, the wheels for the
function's python3.13 on arm64); these tests read what was installed (each ``*.dist-info/METADATA``) against the lock
and against the version this suite imports, and the synthesized templates for any public layer.
"""

from __future__ import annotations

import json
from email.parser import Parser
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from infra.cdk.lambda_asset import LAYER_PACKAGES, build_layer, locked_versions, normalized
from tests.infra.conftest import Synthesis, resources_of

#: what the python3.13 runtime itself provides (boto3 and its closure); the layer must not need anything else
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"})
#: the extras of Powertools the handler uses: Tracer (aws-xray-sdk) and the parser models (pydantic)
EXTRAS = frozenset({"tracer", "parser"})
PUBLIC_LAYER_ACCOUNT = "017000801446"


@pytest.fixture(scope="module")
def installed() -> dict[str, dict[str, object]]:
    """name → {"version", "requires"} of every distribution in the built layer, read from its dist-info."""
    found: dict[str, dict[str, object]] = {}
    for metadata in (build_layer() / "python").glob("*.dist-info/METADATA"):
        message = Parser().parsestr(metadata.read_text(encoding="utf-8"))
        found[normalized(message["Name"])] = {"version": message["Version"],
                                              "requires": message.get_all("Requires-Dist") or []}
    return found


def test_the_layer_holds_exactly_the_locked_pins(installed: dict[str, dict[str, object]]) -> None:
    locked = locked_versions()
    assert {name: meta["version"] for name, meta in installed.items()} == {
        normalized(name): locked[normalized(name)] for name in LAYER_PACKAGES}
    # and the suite runs that same Powertools: what the tests prove is what is deployed
    assert installed["aws-lambda-powertools"]["version"] == version("aws-lambda-powertools")


def test_the_layer_needs_nothing_but_itself_and_the_runtime(installed: dict[str, dict[str, object]]) -> None:
    target = {**default_environment(), "python_version": "3.13", "python_full_version": "3.13.0",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    unmet = []
    for name, meta in installed.items():
        extras = EXTRAS if name == "aws-lambda-powertools" else {""}
        for line in meta["requires"]:  # type: ignore[union-attr]
            requirement = Requirement(str(line))
            if requirement.marker and not any(requirement.marker.evaluate({**target, "extra": e}) for e in extras):
                continue
            dependency = normalized(requirement.name)
            if dependency in RUNTIME_PROVIDED:
                continue
            have = installed.get(dependency)
            if have is None or not requirement.specifier.contains(str(have["version"]), prereleases=True):
                unmet.append(f"{name} needs {requirement}")
    assert unmet == []


def test_the_layer_carries_native_code_for_the_functions_runtime() -> None:
    [core] = (build_layer() / "python" / "pydantic_core").glob("_pydantic_core.*.so")
    assert "cpython-313-aarch64-linux-gnu" in core.name


def test_the_templates_use_our_layer_and_no_public_one(synthesis: Synthesis) -> None:
    for key in synthesis.stack_names:
        text = json.dumps(synthesis.template(key))
        assert PUBLIC_LAYER_ACCOUNT not in text and ":layer:" not in text, key
    for key, _region in synthesis.regions():
        template = synthesis.template(key)
        [(layer_id, layer)] = resources_of(template, "AWS::Lambda::LayerVersion").items()
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        assert f"aws-lambda-powertools=={version('aws-lambda-powertools')}" in layer["Properties"]["Description"]
        asset = Path(synthesis.outdir, f"asset.{layer['Properties']['Content']['S3Key'].removesuffix('.zip')}")
        assert sorted(p.name for p in (asset / "python").glob("aws_lambda_powertools-*.dist-info")) == [
            f"aws_lambda_powertools-{version('aws-lambda-powertools')}.dist-info"]
        functions = resources_of(template, "AWS::Lambda::Function").values()
        assert [f["Properties"]["Layers"] for f in functions if "Layers" in f["Properties"]] == [[{"Ref": layer_id}]]
