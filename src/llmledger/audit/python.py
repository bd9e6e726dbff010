"""Reading Python with the ``ast`` module: SDK clients, raw HTTP calls, provider keys.

Names are resolved through the module's imports (``import openai as oa``, ``from
anthropic import Anthropic``, ``from google import genai``), so ``oa.OpenAI()``
is known to be an OpenAI client and ``client.post(...)`` an HTTP call when
``client`` was made by ``httpx.Client()``.  URLs are followed through string
constants, f-strings, ``+`` and ``%`` and names assigned a string in the same
module.  Comments (``# llmledger: ignore``) come from :mod:`tokenize`, so a
``#`` inside a string is never taken for one.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass, field

from llmledger.audit.hosts import IGNORE_MARK, KEY_NAME, provider_in_text
from llmledger.audit.model import Finding, RuleId

__all__ = ["PythonFile", "read_python"]

#: SDK client classes -> (provider, captured by ``llmledger.instrument()``).
SDK_CLIENTS: dict[str, tuple[str, bool]] = {
    **{
        f"openai.{name}": ("openai", True)
        for name in ("OpenAI", "AsyncOpenAI", "AzureOpenAI", "AsyncAzureOpenAI")
    },
    **{
        f"anthropic.{prefix}{name}": ("anthropic", True)
        for prefix in ("", "Async")
        for name in ("Anthropic", "AnthropicBedrock", "AnthropicVertex")
    },
    "google.genai.Client": ("google", True),
    "google.generativeai.GenerativeModel": ("google", False),
    "vertexai.generative_models.GenerativeModel": ("google", False),
    "mistralai.Mistral": ("mistral", False),
    "mistralai.client.MistralClient": ("mistral", False),
    **{
        f"cohere.{name}": ("cohere", False)
        for name in ("Client", "ClientV2", "AsyncClient", "AsyncClientV2")
    },
}
#: Module-level SDK entry points (the SDK's default client): captured when instrumented.
_MODULE_CALLS = {"openai": "openai"}
_SDK_METHODS = frozenset({"create", "stream", "parse", "acreate"})

#: HTTP functions whose URL argument is read.
HTTP_CALLS = frozenset(
    {
        *(f"requests.{m}" for m in ("get", "post", "put", "patch", "delete", "head", "request")),
        *(f"httpx.{m}" for m in ("get", "post", "put", "patch", "delete", "request", "stream")),
        "aiohttp.request",
        "urllib.request.urlopen",
        "urllib.request.Request",
        "urllib3.request",
        "http.client.HTTPSConnection",
        "http.client.HTTPConnection",
    }
)
#: Calls that make an HTTP client, whose methods are then HTTP calls.
HTTP_CLIENTS = frozenset(
    {
        "requests.Session",
        "requests.session",
        "httpx.Client",
        "httpx.AsyncClient",
        "aiohttp.ClientSession",
        "urllib3.PoolManager",
    }
)
_CLIENT_METHODS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "request", "stream", "send", "urlopen"}
)
_INSTRUMENT = frozenset({"llmledger.instrument", "llmledger.capture.instrument"})
_MANUAL = frozenset({"llmledger.track", "llmledger.record"})
# Readers of settings and the environment: os.getenv("X"), environ.get("X"), config("X")…
_ENV_READERS = frozenset({"os.getenv", "os.environ.get", "os.environ.__getitem__"})


@dataclass(slots=True)
class PythonFile:
    """What one module says about tracking.

    Attributes:
        findings: Findings before the project-wide decision on SDK clients.
        instrumented_clients: SDK clients that ``instrument()`` would capture,
            flagged only when the module's project never instruments.
        instruments: The module calls ``llmledger.instrument()``.
        ignored_lines: Lines carrying ``# llmledger: ignore``.
    """

    findings: list[Finding] = field(default_factory=list)
    instrumented_clients: list[Finding] = field(default_factory=list)
    instruments: bool = False
    ignored_lines: frozenset[int] = frozenset()


def _comment_lines(source: str) -> frozenset[int]:
    lines = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT and IGNORE_MARK in token.string:
                lines.add(token.start[0])
    except (tokenize.TokenError, SyntaxError):  # pragma: no cover - ast.parse failed first
        pass
    return frozenset(lines)


class _Module:
    def __init__(self, tree: ast.Module, source: str, path: str) -> None:
        self.tree = tree
        self.lines = source.splitlines()
        self.path = path
        self.imports: dict[str, str] = {}
        self.strings: dict[str, list[ast.expr]] = {}
        self.http_clients: set[str] = set()
        self.result = PythonFile(ignored_lines=_comment_lines(source))
        self.in_client_args: set[int] = set()
        self.manual = False

    # -- names -------------------------------------------------------------------

    def qualname(self, node: ast.expr) -> str | None:
        """The dotted name an expression stands for, through the imports."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualname(node.value)
            return None if base is None else f"{base}.{node.attr}"
        return None

    @staticmethod
    def target_text(node: ast.expr) -> str | None:
        """``name`` or ``self.client`` of an assignment target, as text."""
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            inner = _Module.target_text(node.value)
            return None if inner is None else f"{inner}.{node.attr}"
        return None

    def collect(self) -> None:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self.imports[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".", 1)[0]
                        self.imports[top] = top
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    self._assigned(target, node.value)
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if item.optional_vars is not None:
                        self._assigned(item.optional_vars, item.context_expr)

    def _assigned(self, target: ast.expr, value: ast.expr) -> None:
        name = self.target_text(target)
        if name is None:
            return
        if isinstance(value, ast.Call) and self.qualname(value.func) in HTTP_CLIENTS:
            self.http_clients.add(name)
        elif isinstance(value, ast.Constant | ast.JoinedStr | ast.BinOp):
            self.strings.setdefault(name, []).append(value)

    # -- strings -----------------------------------------------------------------

    def texts(self, node: ast.expr, depth: int = 0) -> Iterator[str]:
        """The string pieces an expression is built from (as far as can be seen)."""
        if depth > 8:
            return
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value
        elif isinstance(node, ast.JoinedStr):
            for value in node.values:
                yield from self.texts(value, depth + 1)
        elif isinstance(node, ast.FormattedValue):
            yield from self.texts(node.value, depth + 1)
        elif isinstance(node, ast.BinOp):
            yield from self.texts(node.left, depth + 1)
            yield from self.texts(node.right, depth + 1)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # "https://{}/v1".format(host), base.rstrip("/")
            yield from self.texts(node.func.value, depth + 1)
            for arg in node.args:
                yield from self.texts(arg, depth + 1)
        elif isinstance(node, ast.Name | ast.Attribute):
            name = self.target_text(node)
            for value in self.strings.get(name or "", ()):
                yield from self.texts(value, depth + 1)

    def provider_of(self, nodes: list[ast.expr]) -> str | None:
        for node in nodes:
            for text in self.texts(node):
                provider = provider_in_text(text)
                if provider is not None:
                    return provider
        return None

    # -- findings ----------------------------------------------------------------

    def finding(self, rule: RuleId, node: ast.AST, message: str, provider: str | None) -> Finding:
        line = getattr(node, "lineno", 1)
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        return Finding(
            rule=rule,
            path=self.path,
            line=line,
            column=getattr(node, "col_offset", 0) + 1,
            end_line=getattr(node, "end_lineno", None) or line,
            message=message,
            provider=provider,
            code=code,
        )

    def scan(self) -> PythonFile:
        self.collect()
        calls = [node for node in ast.walk(self.tree) if isinstance(node, ast.Call)]
        for call in calls:
            name = self.qualname(call.func)
            if name in _INSTRUMENT:
                self.result.instruments = True
            elif name in _MANUAL:
                self.manual = True
        for call in calls:
            self._sdk_client(call)
        for call in calls:
            self._http_call(call)
        self._key_reads()
        return self.result

    def _sdk_client(self, call: ast.Call) -> None:
        name = self.qualname(call.func)
        if name is None:
            return
        if name == "boto3.client" and "bedrock-runtime" in "".join(
            t for arg in call.args[:1] for t in self.texts(arg)
        ):
            sdk: tuple[str, bool] | None = ("bedrock", False)
        else:
            sdk = SDK_CLIENTS.get(name)
        if sdk is None:
            top, _, rest = name.partition(".")
            method = name.rsplit(".", 1)[-1]
            if top in _MODULE_CALLS and rest and method in _SDK_METHODS:
                found = self.finding(
                    "untracked-sdk-client",
                    call,
                    f"{name}() uses the SDK's default client in a project that never calls "
                    "llmledger.instrument()",
                    _MODULE_CALLS[top],
                )
                self.result.instrumented_clients.append(found)
            return
        provider, captured = sdk
        self.in_client_args.update(
            id(sub)
            for part in (*call.args, *(k.value for k in call.keywords))
            for sub in ast.walk(part)
        )
        if captured:
            self.result.instrumented_clients.append(
                self.finding(
                    "untracked-sdk-client",
                    call,
                    f"{name} client in a project that never calls llmledger.instrument()",
                    provider,
                )
            )
        elif not self.manual:
            self.result.findings.append(
                self.finding(
                    "untracked-sdk-client",
                    call,
                    f"{name} client: llmledger.instrument() does not capture this SDK and "
                    "this module never calls llmledger.track() or llmledger.record()",
                    provider,
                )
            )

    def _http_call(self, call: ast.Call) -> None:
        name = self.qualname(call.func)
        label = name
        if name in HTTP_CLIENTS:
            # A client made for a provider's base URL: its relative calls go there.
            base = [k.value for k in call.keywords if k.arg in ("base_url", "host")]
            provider = self.provider_of(base)
            if provider is not None:
                self.result.findings.append(
                    self.finding(
                        "raw-http-provider-call",
                        call,
                        f"{name}(base_url=…) for the {provider} API: its requests are not tracked",
                        provider,
                    )
                )
            return
        if name not in HTTP_CALLS:
            if not isinstance(call.func, ast.Attribute) or call.func.attr not in _CLIENT_METHODS:
                return
            owner = call.func.value
            if isinstance(owner, ast.Call) and self.qualname(owner.func) in HTTP_CLIENTS:
                label = f"{self.qualname(owner.func)}().{call.func.attr}"
            elif self.target_text(owner) in self.http_clients:
                label = f"{self.target_text(owner)}.{call.func.attr}"
            else:
                return
        urls = [*call.args[:1], *(k.value for k in call.keywords if k.arg in ("url", "host"))]
        provider = self.provider_of(urls)
        if provider is not None:
            self.result.findings.append(
                self.finding(
                    "raw-http-provider-call",
                    call,
                    f"{label}() to the {provider} API: not tracked by llmledger",
                    provider,
                )
            )

    def _key_reads(self) -> None:
        reads: list[tuple[ast.expr, str]] = []
        for node in ast.walk(self.tree):
            key = self._key_read(node)
            if key is not None and isinstance(node, ast.expr):
                reads.append((node, key))
        if not reads:
            return
        client_names = {
            node.id
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Name) and id(node) in self.in_client_args
        }
        uses: dict[str, int] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                uses[node.id] = uses.get(node.id, 0) + 1
        given_to_clients = {
            name
            for name in client_names
            if uses.get(name, 0)
            == sum(
                1
                for n in ast.walk(self.tree)
                if isinstance(n, ast.Name) and n.id == name and id(n) in self.in_client_args
            )
        }
        assigned_from: dict[int, str] = {}
        handed_on: set[int] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    if KEY_NAME.match(target.id):
                        # OPENAI_API_KEY = os.environ[...] in a settings module: the key
                        # is handed on by name, and its readers are checked where they are.
                        handed_on.update(id(sub) for sub in ast.walk(node.value))
                        continue
                    for sub in ast.walk(node.value):
                        assigned_from[id(sub)] = target.id
        for node, key in reads:
            if id(node) in self.in_client_args:
                continue
            if id(node) in handed_on or assigned_from.get(id(node)) in given_to_clients:
                continue
            self.result.findings.append(
                self.finding(
                    "provider-key-bypass",
                    node,
                    f"{key} read outside a tracked SDK client",
                    None,
                )
            )

    def _key_read(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Call):
            name = self.qualname(node.func)
            func = node.func
            reader = (
                name in _ENV_READERS
                or (
                    # environ.get("X"), config("X"), env("X"), env.str("X") of settings libraries
                    isinstance(func, ast.Attribute)
                    and func.attr in ("get", "str")
                    and isinstance(func.value, ast.Name | ast.Attribute)
                    and self.target_text(func.value) in ("environ", "os.environ", "env")
                )
                or (isinstance(func, ast.Name) and func.id in ("config", "env", "getenv"))
            )
            if reader and node.args:
                first = node.args[0]
                if (
                    isinstance(first, ast.Constant)
                    and isinstance(first.value, str)
                    and KEY_NAME.match(first.value)
                ):
                    return first.value
            return None
        if isinstance(node, ast.Subscript):
            owner = self.target_text(node.value)
            index = node.slice
            if (
                owner in ("os.environ", "environ")
                and isinstance(index, ast.Constant)
                and isinstance(index.value, str)
                and KEY_NAME.match(index.value)
            ):
                return index.value
            return None
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Load)
            and KEY_NAME.match(node.attr)
        ):
            return node.attr  # settings.OPENAI_API_KEY
        return None


def read_python(source: str, path: str) -> PythonFile:
    """The findings of one Python module (see :class:`PythonFile`).

    Raises:
        SyntaxError: when the module does not parse.

    Example:
        >>> found = read_python('import requests\\nrequests.post("https://api.openai.com/v1/x")\\n',
        ...                     "a.py")
        >>> [(f.rule, f.line, f.provider) for f in found.findings]
        [('raw-http-provider-call', 2, 'openai')]
    """
    tree = ast.parse(source, filename=path)
    return _Module(tree, source, path).scan()
