"""Findings as SARIF 2.1.0, the format code-scanning services read."""

from __future__ import annotations

from typing import Any

from llmledger.audit.model import RULES, AuditReport

__all__ = ["SARIF_SCHEMA", "to_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_INFORMATION_URI = "https://github.com/llmledger/llmledger"


def to_sarif(report: AuditReport, version: str) -> dict[str, Any]:
    """The report as one SARIF 2.1.0 run (``llmledger audit --format sarif``).

    Example:
        >>> sarif = to_sarif(AuditReport(), "1.0")
        >>> sarif["version"], sarif["runs"][0]["results"]
        ('2.1.0', [])
    """
    rule_ids = list(RULES)
    rules = [
        {
            "id": rule.id,
            "name": "".join(part.title() for part in rule.id.split("-")),
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.title},
            "help": {"text": rule.help},
            "defaultConfiguration": {"level": "warning"},
        }
        for rule in RULES.values()
    ]
    results = [
        {
            "ruleId": finding.rule,
            "ruleIndex": rule_ids.index(finding.rule),
            "level": "warning",
            "message": {"text": finding.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": finding.path, "uriBaseId": "%SRCROOT%"},
                        "region": {
                            "startLine": finding.line,
                            "startColumn": finding.column,
                            "endLine": finding.end_line,
                        },
                    }
                }
            ],
            "partialFingerprints": {
                "llmledgerFinding/v1": f"{finding.rule}:{finding.path}:{finding.code}"
            },
            **({"properties": {"provider": finding.provider}} if finding.provider else {}),
        }
        for finding in report.findings
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "llmledger audit",
                        "version": version,
                        "informationUri": _INFORMATION_URI,
                        "rules": rules,
                    }
                },
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
