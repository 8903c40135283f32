"""cfn-lint on every synthesized template: no errors; the only warning is CDK's redundant DependsOn (W3005)."""

from __future__ import annotations

from cfnlint.api import ManualArgs, lint_file

from tests.infra.conftest import Synthesis

#: CDK adds DependsOn on a role's default policy next to a GetAtt of the role; harmless and not ours to change
TOLERATED_WARNINGS = {"W3005"}


def test_every_template_passes_cfn_lint(synthesis: Synthesis) -> None:
    for key in synthesis.stack_names:
        path = synthesis.template_path(key)
        matches = lint_file(path, ManualArgs(regions=[r.region for r in synthesis.environment.regions]))
        errors = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]
        assert errors == [], (path.name, errors)
        unexpected = [f"{m.rule.id} {m.message}" for m in matches
                      if not m.rule.id.startswith("E") and m.rule.id not in TOLERATED_WARNINGS]
        assert unexpected == [], (path.name, unexpected)
