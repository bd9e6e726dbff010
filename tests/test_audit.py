"""``llmledger audit`` on a tree of realistic examples and on llmledger itself."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from click.testing import CliRunner

from llmledger.audit import audit
from llmledger.audit.javascript import tokens
from llmledger.audit.python import read_python
from llmledger.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = Path(__file__).parent / "data" / "audit"
SARIF_SCHEMA = Path(__file__).parent / "data" / "sarif" / "sarif-schema-2.1.0.json"
_EXPECT = re.compile(r"expect: ([a-z-]+)")


def expected(folder: Path) -> set[tuple[str, int, str]]:
    """``(path, line, rule)`` of every line marked ``expect: RULE`` in the examples."""
    marked = set()
    for path in sorted(folder.rglob("*")):
        if path.suffix not in (".py", ".ts", ".tsx"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for rule in _EXPECT.findall(line):
                marked.add((path.relative_to(folder).as_posix(), number, rule))
    return marked


def test_the_examples_report_exactly_the_marked_lines() -> None:
    report = audit(EXAMPLES)
    found = {(f.path, f.line, f.rule) for f in report.findings}
    assert found == expected(EXAMPLES)
    assert len(found) == 7
    # the two accepted lines: the FastAPI health probe and the Next.js model list
    assert sorted((f.path, f.rule) for f in report.ignored) == [
        ("fastapi_reports/app/main.py", "raw-http-provider-call"),
        ("nextjs_chat/app/api/chat/route.ts", "raw-http-provider-call"),
    ]
    assert report.errors == []
    assert [f.provider for f in report.findings if f.provider] == [
        "openai",
        "anthropic",
        "openai",
        "google",
    ]


def test_instrumented_code_is_not_reported() -> None:
    report = audit(EXAMPLES / "instrumented_worker")
    assert report.findings == []
    assert report.files == 2


def test_the_same_clients_without_instrument_are_reported(tmp_path: Path) -> None:
    jobs = (EXAMPLES / "instrumented_worker" / "worker" / "jobs.py").read_text()
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'w'\n")
    (tmp_path / "jobs.py").write_text(jobs)
    report = audit(tmp_path)
    assert [(f.line, f.provider) for f in report.findings] == [
        (8, "openai"),
        (10, "anthropic"),
        (11, "google"),
    ]
    assert {f.rule for f in report.findings} == {"untracked-sdk-client"}


def test_llmledger_itself_is_clean() -> None:
    result = CliRunner().invoke(main, ["audit", str(ROOT / "src")])
    assert result.exit_code == 0, result.output
    assert "no untracked LLM calls" in result.output


def test_the_command_fails_on_findings_and_prints_a_table() -> None:
    result = CliRunner().invoke(main, ["audit", str(EXAMPLES)])
    assert result.exit_code == 1
    assert "django_shop/shop/views.py:9" in result.output
    assert "7 finding(s) in 9 file(s); 2 accepted by llmledger: ignore" in result.output


def test_json_output() -> None:
    result = CliRunner().invoke(main, ["audit", str(EXAMPLES), "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["ignored"] == 2 and data["files"] == 9
    first = data["findings"][0]
    assert first == {
        "rule": "untracked-sdk-client",
        "path": "django_shop/shop/views.py",
        "line": 9,
        "column": 10,
        "end_line": 9,
        "message": "openai.OpenAI client in a project that never calls llmledger.instrument()",
        "provider": "openai",
        "code": "client = OpenAI(api_key=settings.OPENAI_API_KEY)  # expect: untracked-sdk-client",
    }


def test_sarif_output_is_valid_sarif_2_1_0(tmp_path: Path) -> None:
    out = tmp_path / "audit.sarif"
    result = CliRunner().invoke(main, ["audit", str(EXAMPLES), "--format", "sarif", "-o", str(out)])
    assert result.exit_code == 1
    sarif: dict[str, Any] = json.loads(out.read_text())
    validator = jsonschema_rs.validator_for(json.loads(SARIF_SCHEMA.read_text()))
    assert [str(e) for e in validator.iter_errors(sarif)] == []
    run = sarif["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [
        "untracked-sdk-client",
        "raw-http-provider-call",
        "provider-key-bypass",
    ]
    results = run["results"]
    assert len(results) == 7
    locations = {
        (
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
            r["ruleId"],
        )
        for r in results
    }
    assert locations == expected(EXAMPLES)
    # the schema check can fail: a wrong level is refused
    results[0]["level"] = "severe"
    assert not validator.is_valid(sarif)


def test_a_file_that_does_not_parse_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "ok.py").write_text("import requests\nrequests.get('https://api.mistral.ai/v1')\n")
    result = CliRunner().invoke(main, ["audit", str(tmp_path), "--format", "json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["errors"] == [
        {"path": "broken.py", "reason": "not valid Python: invalid syntax (line 1)"}
    ]
    assert [(f["path"], f["provider"]) for f in data["findings"]] == [("ok.py", "mistral")]
    assert "warning: skipped broken.py" in result.stderr


@pytest.mark.parametrize(
    ("source", "rules"),
    [
        # URLs through names, f-strings, concatenation and clients made for a base URL
        (
            "import requests\nBASE = 'https://api.openai.com/v1'\nrequests.post(BASE + '/x')\n",
            ["raw-http-provider-call"],
        ),
        (
            "import httpx\nc = httpx.Client(base_url='https://api.anthropic.com')\n",
            ["raw-http-provider-call"],
        ),
        (
            "import aiohttp\nasync def f():\n    async with aiohttp.ClientSession() as s:\n"
            "        await s.post(f'https://{\"api.groq.com\"}/openai/v1')\n",
            ["raw-http-provider-call"],
        ),
        (
            "from urllib.request import Request, urlopen\n"
            "urlopen(Request('https://generativelanguage.googleapis.com/v1beta/models'))\n",
            ["raw-http-provider-call"],
        ),
        (
            "import http.client\n"
            "http.client.HTTPSConnection('bedrock-runtime.us-east-1.amazonaws.com')\n",
            ["raw-http-provider-call"],
        ),
        # SDKs llmledger.instrument() cannot capture, unless the module records by hand
        ("from mistralai import Mistral\nm = Mistral(api_key='x')\n", ["untracked-sdk-client"]),
        (
            "import llmledger\nfrom mistralai import Mistral\nm = Mistral(api_key='x')\n"
            "with llmledger.track(provider='mistral', model='m'):\n    pass\n",
            [],
        ),
        ("import boto3\nb = boto3.client('bedrock-runtime')\n", ["untracked-sdk-client"]),
        ("import boto3\ns3 = boto3.client('s3')\n", []),
        # keys
        (
            "import os\nheaders = {'Authorization': os.getenv('MISTRAL_API_KEY')}\n",
            ["provider-key-bypass"],
        ),
        (
            "import os\nfrom openai import OpenAI\nimport llmledger\nllmledger.instrument()\n"
            "k = os.environ['OPENAI_API_KEY']\nc = OpenAI(api_key=k)\nprint(k)\n",
            ["provider-key-bypass"],
        ),
        # a provider host in text that is no call, and a '#' inside a string
        ("LINK = 'https://api.openai.com/docs'\nprint('# llmledger: ignore', LINK)\n", []),
        (
            "import requests\nrequests.get('https://api.openai.com/v1/models', "
            "headers={'x': '# llmledger: ignore'})\n",
            ["raw-http-provider-call"],
        ),
    ],
)
def test_python_rules(source: str, rules: list[str]) -> None:
    found = read_python(source, "m.py")
    assert [f.rule for f in found.findings] == rules


def test_the_tokenizer_skips_comments_regexes_and_reads_templates() -> None:
    source = (
        "const a = x / 2 / y; // fetch('https://api.openai.com')\n"
        "const re = /['\"`]/g;\n"
        "/* block\n llmledger: ignore */ const t = `v${process.env.OPENAI_API_KEY}`;\n"
    )
    found, ignored = tokens(source)
    texts = [t.text for t in found]
    assert "https://api.openai.com" not in texts
    assert texts[:9] == ["const", "a", "=", "x", "/", "2", "/", "y", ";"]
    assert ("ident", "OPENAI_API_KEY", 4) in {(t.kind, t.text, t.line) for t in found}
    assert ignored == frozenset({3})
