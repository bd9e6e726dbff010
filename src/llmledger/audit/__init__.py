"""``llmledger audit``: find the LLM calls in a code base that escape tracking.

Three rules (:data:`RULES`): provider SDK clients in a project that never calls
``llmledger.instrument()`` (or SDKs it cannot capture, used without
``track()``/``record()``); raw HTTP calls to provider hosts (requests, httpx,
aiohttp, urllib; ``fetch`` and axios in JavaScript and TypeScript); provider API
keys read where they do not go to an SDK client.  Python is read with
:mod:`ast` (:mod:`llmledger.audit.python`), JavaScript and TypeScript with a
tokenizer (:mod:`llmledger.audit.javascript`).  A comment ``# llmledger: ignore``
(``// llmledger: ignore``) on a line accepts its findings.

The package reads files and nothing else: no database, no network.
"""

from llmledger.audit.model import RULES, AuditReport, Finding, Rule
from llmledger.audit.sarif import to_sarif
from llmledger.audit.scan import audit

__all__ = ["RULES", "AuditReport", "Finding", "Rule", "audit", "to_sarif"]
