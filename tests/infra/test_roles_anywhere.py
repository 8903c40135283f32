"""Prod with IAM Roles Anywhere and an SSE-KMS staging bucket: the access stack makes the trust anchor from the
configured CA, a profile, and a role only that anchor's certificates with the configured CN may assume."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from cfnlint.api import ManualArgs, lint_file
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from config.loader import load_environment
from config.model import EnvironmentConfig, RolesAnywhereConfig
from infra.cdk.app import PLACEHOLDER_ACCOUNT
from infra.cdk.constructs.finisher_access import CaCertificateError, ca_certificate_pem
from infra.cdk.lambda_asset import build_asset
from infra.cdk.nag import apply_nag_checks, apply_suppressions
from infra.cdk.stacks import build_stacks
from tests.infra.conftest import only
from tests.infra.test_cfn_lint import TOLERATED_WARNINGS

CN = "finisher.bdrc.example"
KEY_ARN = "arn:aws:kms:ap-northeast-2:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bdrc-restore test CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now)
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _prod_with_roles_anywhere(pem: str) -> EnvironmentConfig:
    prod = load_environment("prod")
    finisher = prod.finisher.model_copy(
        update={"roles_anywhere": RolesAnywhereConfig(ca_certificate_pem=pem, certificate_cn=CN)})
    first = prod.regions[0]
    encrypted = first.model_copy(update={"buckets": [first.buckets[0].model_copy(update={"kms_key_arn": KEY_ARN}),
                                                     *first.buckets[1:]]})
    return prod.model_copy(update={"finisher": finisher, "regions": [encrypted, *prod.regions[1:]]})


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("roles-anywhere")
    pem = _ca_pem()
    environment = _prod_with_roles_anywhere(pem)
    app = App(outdir=str(root / "cdk.out"), context={"@aws-cdk/core:validationReportPrettyPrint": False})
    stacks = build_stacks(app, environment, account=PLACEHOLDER_ACCOUNT, asset_dir=build_asset(root / "asset"))
    apply_nag_checks(app)
    apply_suppressions(stacks)
    app.synth()
    path = root / "cdk.out" / f"{stacks.access.stack_name}.template.json"
    return {"pem": pem, "environment": environment, "path": path, "root": root,
            "template": json.loads(path.read_text(encoding="utf-8"))}


def test_trust_anchor_is_made_from_the_configured_ca(synth: dict[str, Any]) -> None:
    _, anchor = only(synth["template"], "AWS::RolesAnywhere::TrustAnchor")
    assert anchor["Properties"] == {
        "Name": "bdrc-restore-prod-finisher", "Enabled": True,
        "Source": {"SourceType": "CERTIFICATE_BUNDLE",
                   "SourceData": {"X509CertificateData": synth["pem"].strip() + "\n"}},
    }


def test_role_trusts_only_the_anchor_s_certificates_with_the_configured_cn(synth: dict[str, Any]) -> None:
    template = synth["template"]
    anchor_id, _ = only(template, "AWS::RolesAnywhere::TrustAnchor")
    _, role = only(template, "AWS::IAM::Role")
    condition = {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [anchor_id, "TrustAnchorArn"]}},
                 "StringEquals": {"aws:PrincipalTag/x509Subject/CN": CN}}
    principal = {"Service": "rolesanywhere.amazonaws.com"}
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Condition": condition, "Principal": principal},
        {"Action": ["sts:TagSession", "sts:SetSourceIdentity"], "Effect": "Allow", "Condition": condition,
         "Principal": principal},
    ]
    assert role["Properties"]["MaxSessionDuration"] == 12 * 3600


def test_profile_lists_the_finisher_role_for_twelve_hours(synth: dict[str, Any]) -> None:
    template = synth["template"]
    role_id, _ = only(template, "AWS::IAM::Role")
    _, profile = only(template, "AWS::RolesAnywhere::Profile")
    assert profile["Properties"] == {"Name": "bdrc-restore-prod-finisher", "Enabled": True,
                                     "RoleArns": [{"Fn::GetAtt": [role_id, "Arn"]}], "DurationSeconds": 43200}


def test_outputs_name_what_the_signing_helper_needs(synth: dict[str, Any]) -> None:
    outputs = synth["template"]["Outputs"]
    assert {"RolesAnywhereTrustAnchorArn", "RolesAnywhereProfileArn", "FinisherPrincipalArn"} <= set(outputs)


def test_finisher_may_decrypt_sse_kms_bags_through_s3_only(synth: dict[str, Any]) -> None:
    _, policy = only(synth["template"], "AWS::IAM::ManagedPolicy")
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    [decrypt] = [s for s in statements if s.get("Sid") == "DecryptStagedBags"]
    assert decrypt == {"Sid": "DecryptStagedBags", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEY_ARN,
                       "Condition": {"StringEquals": {"kms:ViaService": ["s3.ap-northeast-2.amazonaws.com"]}}}


def test_roles_anywhere_leaves_no_open_nag_finding(synth: dict[str, Any]) -> None:
    report = json.loads((synth["root"] / "cdk.out" / "validation-report.json").read_text(encoding="utf-8"))
    for plugin in report["pluginReports"]:
        assert plugin["conclusion"] == "success"
        assert plugin["violations"] == []


def test_roles_anywhere_template_passes_cfn_lint(synth: dict[str, Any]) -> None:
    matches = lint_file(synth["path"], ManualArgs(regions=["us-east-1"]))
    assert [f"{m.rule.id} {m.message}" for m in matches if m.rule.id not in TOLERATED_WARNINGS] == []


def test_ca_certificate_file_is_read_relative_to_the_repository(tmp_path: Path) -> None:
    pem = _ca_pem()
    (tmp_path / "ca.pem").write_text(pem, encoding="ascii")
    assert ca_certificate_pem(RolesAnywhereConfig(ca_certificate_file=tmp_path / "ca.pem", certificate_cn=CN)) == (
        pem.strip() + "\n")
    with pytest.raises(CaCertificateError, match=r"config/no-such-ca\.pem: cannot read it"):
        ca_certificate_pem(RolesAnywhereConfig(ca_certificate_file=Path("config/no-such-ca.pem"), certificate_cn=CN))


def test_a_ca_that_is_not_pem_is_refused() -> None:
    with pytest.raises(CaCertificateError, match="ca_certificate_pem: not a PEM certificate"):
        ca_certificate_pem(RolesAnywhereConfig(ca_certificate_pem="MIIB...", certificate_cn=CN))


def test_exactly_one_ca_source_is_configured() -> None:
    with pytest.raises(ValidationError, match="exactly one of ca_certificate_file and ca_certificate_pem"):
        RolesAnywhereConfig(certificate_cn=CN)
    with pytest.raises(ValidationError, match="exactly one of"):
        RolesAnywhereConfig(ca_certificate_file=Path("a.pem"), ca_certificate_pem="x", certificate_cn=CN)
