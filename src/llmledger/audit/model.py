"""What an audit finds: the rules, one finding, the report of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["RULES", "AuditReport", "Finding", "Rule", "RuleId"]

RuleId = Literal["untracked-sdk-client", "raw-http-provider-call", "provider-key-bypass"]


@dataclass(frozen=True, slots=True)
class Rule:
    """A kind of call that escapes tracking.

    Attributes:
        id: The rule's name (also its SARIF ``ruleId``).
        title: One line for people.
        help: What to do about a finding.
    """

    id: RuleId
    title: str
    help: str


#: Every rule, in the order reports list them.
RULES: dict[RuleId, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "untracked-sdk-client",
            "A provider SDK client that llmledger does not capture here",
            "Call llmledger.instrument() once at start-up in this project (for openai, "
            "anthropic and google-genai), or record the calls of other SDKs with "
            "llmledger.track() or llmledger.record().",
        ),
        Rule(
            "raw-http-provider-call",
            "A raw HTTP call to a provider's API",
            "Use the provider's SDK with llmledger.instrument(), or wrap the call in "
            "llmledger.track() (Python) or send its usage to the service's /v1/events.",
        ),
        Rule(
            "provider-key-bypass",
            "A provider API key read outside a tracked SDK client",
            "Give the key to the SDK client only (api_key=…), so its calls go through the "
            "instrumented client.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One place where a call escapes tracking.

    Attributes:
        rule: The rule's id.
        path: The file, relative to the folder audited (``/`` separated).
        line: 1-based line of the finding's start.
        column: 1-based column.
        end_line: Last line of the expression found.
        message: What was found, for people.
        provider: The provider concerned, when known.
        code: The source line, stripped.
    """

    rule: RuleId
    path: str
    line: int
    column: int
    end_line: int
    message: str
    provider: str | None = None
    code: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "rule": self.rule,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "message": self.message,
            "provider": self.provider,
            "code": self.code,
        }


@dataclass(slots=True)
class AuditReport:
    """The findings of an audit, and what it read.

    Attributes:
        findings: What escapes tracking, by file and line.
        ignored: Findings accepted by an ``llmledger: ignore`` comment.
        files: How many files were read.
        errors: Files that could not be read or parsed, with the reason.
    """

    findings: list[Finding] = field(default_factory=list)
    ignored: list[Finding] = field(default_factory=list)
    files: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``llmledger audit --format json``)."""
        return {
            "findings": [f.to_dict() for f in self.findings],
            "ignored": len(self.ignored),
            "files": self.files,
            "errors": [{"path": p, "reason": r} for p, r in self.errors],
        }
