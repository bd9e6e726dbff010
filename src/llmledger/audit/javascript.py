"""Reading JavaScript and TypeScript at the token level: ``fetch`` to providers, SDK
clients, provider keys.

There is no JavaScript parser in the standard library, so :func:`tokens` splits
the source into identifiers, strings, template literals, numbers and
punctuation, skipping comments and regular-expression literals (a ``/`` starts
one where an expression may start: after an operator, an opening bracket or a
keyword such as ``return``).  A string never spans a line, so an apostrophe in
JSX text costs at most the rest of its line.  The scan then reads token
patterns: ``fetch(`` / ``axios.post(`` with their first argument (string
tokens, template literals and names bound to strings by ``const``/``let``/
``var``), ``new X(`` where ``X`` was imported from a provider SDK package, and
``process.env.X`` / ``import.meta.env.X`` for provider key names.  Comments are
kept only to find ``// llmledger: ignore``.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass

from llmledger.audit.hosts import IGNORE_MARK, KEY_NAME, provider_in_text
from llmledger.audit.model import Finding

__all__ = ["JS_SUFFIXES", "Token", "read_javascript", "tokens"]

JS_SUFFIXES = frozenset({".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts"})

#: npm packages of provider SDKs -> provider.
SDK_PACKAGES = {
    "openai": "openai",
    "@anthropic-ai/sdk": "anthropic",
    "@google/genai": "google",
    "@google/generative-ai": "google",
    "@mistralai/mistralai": "mistral",
    "cohere-ai": "cohere",
    "groq-sdk": "groq",
}
_HTTP_FUNCTIONS = frozenset({"fetch", "axios", "ky", "got", "ofetch", "$fetch"})
_HTTP_OWNERS = frozenset({"axios", "ky", "got", "window", "globalThis", "self"})
_REGEX_AFTER_WORDS = frozenset(
    {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw"}
    | {"yield", "await", "instanceof"}
)
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_NUMBER = re.compile(r"\d[\w.]*")
_TEMPLATE_NAME = re.compile(r"\$\{\s*([A-Za-z_$][\w$]*)")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``ident``, ``string`` (its text), ``template`` (raw text), ``num`` or
    ``punct``; 1-based line and column."""

    kind: str
    text: str
    line: int
    column: int


def tokens(source: str) -> tuple[list[Token], frozenset[int]]:
    """The tokens of a JavaScript or TypeScript source, and the lines of ignore comments.

    Example:
        >>> found, ignored = tokens('fetch("https://x") // llmledger: ignore\\nlet r = /a"b/g;')
        >>> [t.text for t in found], sorted(ignored)
        (['fetch', '(', 'https://x', ')', 'let', 'r', '=', ';'], [1])
    """
    out: list[Token] = []
    ignored: set[int] = set()
    newlines = [at for at, char in enumerate(source) if char == "\n"]
    i, n = 0, len(source)

    def where(at: int) -> tuple[int, int]:
        line = bisect_left(newlines, at) + 1
        return line, at - (newlines[line - 2] + 1 if line > 1 else 0) + 1

    def regex_allowed() -> bool:
        if not out:
            return True
        last = out[-1]
        if last.kind == "punct":
            return last.text not in (")", "]", "}")
        return last.kind == "ident" and last.text in _REGEX_AFTER_WORDS

    while i < n:
        char = source[i]
        if char.isspace():
            i += 1
        elif source.startswith("//", i) or source.startswith("/*", i):
            block = source[i + 1] == "*"
            end = source.find("*/" if block else "\n", i + 2)
            end = n if end < 0 else end + (2 if block else 0)
            if IGNORE_MARK in source[i:end]:
                ignored.add(where(i)[0])
            i = end
        elif char in "'\"":
            j = i + 1
            while j < n and source[j] != char and source[j] != "\n":
                j += 2 if source[j] == "\\" else 1
            out.append(Token("string", source[i + 1 : min(j, n)], *where(i)))
            i = j + 1 if j < n and source[j] == char else j
        elif char == "`":
            j, depth, spans = i + 1, 0, []
            while j < n:
                if source[j] == "\\":
                    j += 2
                    continue
                if source.startswith("${", j):
                    depth += 1
                    if depth == 1:
                        spans.append([j + 2, n])
                    j += 2
                    continue
                if source[j] == "}" and depth:
                    depth -= 1
                    if depth == 0:
                        spans[-1][1] = j
                elif source[j] == "`" and not depth:
                    break
                j += 1
            out.append(Token("template", source[i + 1 : min(j, n)], *where(i)))
            # The expressions inside ${…} are code: their tokens follow the template's.
            for start, end in spans:
                line, column = where(start)
                inner, inner_ignored = tokens(source[start:end])
                ignored.update(at + line - 1 for at in inner_ignored)
                out.extend(
                    Token(
                        t.kind, t.text, t.line + line - 1, t.column + (column - 1) * (t.line == 1)
                    )
                    for t in inner
                )
            i = j + 1
        elif char == "/" and regex_allowed():
            j, in_class = i + 1, False
            while j < n and source[j] != "\n":
                if source[j] == "\\":
                    j += 2
                    continue
                if source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                elif source[j] == "/" and not in_class:
                    break
                j += 1
            j += 1
            while j < n and (source[j].isalnum() or source[j] == "_"):
                j += 1  # flags
            i = j
        else:
            match = _IDENT.match(source, i) or _NUMBER.match(source, i)
            if match is not None:
                kind = "num" if char.isdigit() else "ident"
                out.append(Token(kind, match.group(0), *where(i)))
                i = match.end()
            else:
                out.append(Token("punct", char, *where(i)))
                i += 1
    return out, frozenset(ignored)


def _closing(toks: list[Token], start: int) -> int:
    """The index of the bracket closing the one at ``start`` (or the last token)."""
    depth = 0
    for index in range(start, len(toks)):
        text = toks[index].text if toks[index].kind == "punct" else ""
        if text in ("(", "[", "{"):
            depth += 1
        elif text in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return index
    return len(toks) - 1


class _Scan:
    def __init__(self, source: str, path: str) -> None:
        self.toks, self.ignored = tokens(source)
        self.lines = source.splitlines()
        self.path = path
        self.strings: dict[str, list[Token]] = {}
        self.sdk_names: dict[str, str] = {}
        self.findings: list[Finding] = []

    def finding(
        self, rule: str, first: Token, last: Token, message: str, provider: str | None
    ) -> None:
        code = self.lines[first.line - 1].strip() if first.line <= len(self.lines) else ""
        self.findings.append(
            Finding(rule, self.path, first.line, first.column, last.line, message, provider, code)  # type: ignore[arg-type]
        )

    def texts(self, toks: list[Token], depth: int = 0) -> Iterator[str]:
        if depth > 6:
            return
        for tok in toks:
            if tok.kind in ("string", "template"):
                yield tok.text
                if tok.kind == "template":
                    for name in _TEMPLATE_NAME.findall(tok.text):
                        yield from self.texts(self.strings.get(name, []), depth + 1)
            elif tok.kind == "ident" and tok.text in self.strings:
                yield from self.texts(self.strings[tok.text], depth + 1)

    def provider_of(self, toks: list[Token]) -> str | None:
        for text in self.texts(toks):
            provider = provider_in_text(text)
            if provider is not None:
                return provider
        return None

    def collect(self) -> None:
        toks = self.toks
        for index, tok in enumerate(toks):
            if tok.kind != "ident":
                continue
            if tok.text in ("const", "let", "var") and index + 2 < len(toks):
                name, equals = toks[index + 1], toks[index + 2]
                if name.kind == "ident" and equals.text == "=":
                    value = self._statement(index + 3)
                    self.strings[name.text] = value
                    self._required(name.text, value)
            elif tok.text == "import":
                self._imported(index)

    def _statement(self, start: int) -> list[Token]:
        """The tokens of an initialiser: up to ``;`` or the next declaration at depth 0."""
        out: list[Token] = []
        depth = 0
        for tok in self.toks[start:]:
            if tok.kind == "punct":
                if tok.text in "([{":
                    depth += 1
                elif tok.text in ")]}":
                    if depth == 0:
                        break
                    depth -= 1
                elif tok.text in ";," and depth == 0:
                    break
            elif (
                depth == 0
                and tok.kind == "ident"
                and tok.text
                in ("const", "let", "var", "function", "export", "import", "return", "class")
            ):
                break
            out.append(tok)
        return out

    def _required(self, name: str, value: list[Token]) -> None:
        # const OpenAI = require("openai")
        if len(value) >= 4 and value[0].text == "require" and value[2].kind == "string":
            provider = SDK_PACKAGES.get(value[2].text)
            if provider is not None:
                self.sdk_names[name] = provider

    def _imported(self, index: int) -> None:
        # import OpenAI from "openai"; import { GoogleGenAI as G } from "@google/genai"
        names: list[str] = []
        j = index + 1
        while j < len(self.toks) and self.toks[j].text != "from" and j - index < 40:
            tok = self.toks[j]
            if tok.kind == "ident" and tok.text not in ("type", "as", "default"):
                if j > 0 and self.toks[j - 1].text == "as" and names:
                    names[-1] = tok.text
                else:
                    names.append(tok.text)
            elif tok.kind == "string":
                return  # a bare import "x"
            j += 1
        if j + 1 < len(self.toks) and self.toks[j + 1].kind == "string":
            provider = SDK_PACKAGES.get(self.toks[j + 1].text)
            if provider is not None:
                for name in names:
                    self.sdk_names[name] = provider

    def scan(self) -> list[Finding]:
        self.collect()
        toks = self.toks
        client_args: set[int] = set()
        for index, tok in enumerate(toks):
            if tok.text == "new" and tok.kind == "ident" and index + 2 < len(toks):
                name = toks[index + 1]
                provider = self.sdk_names.get(name.text)
                if provider is not None and toks[index + 2].text == "(":
                    end = _closing(toks, index + 2)
                    client_args.update(range(index + 2, end + 1))
                    self.finding(
                        "untracked-sdk-client",
                        tok,
                        toks[end],
                        f"new {name.text}() ({provider} SDK in JavaScript): llmledger does not "
                        "capture it; send its usage to the service's /v1/events",
                        provider,
                    )
        for index, tok in enumerate(toks):
            if tok.kind != "ident":
                continue
            after = toks[index + 1] if index + 1 < len(toks) else None
            before = toks[index - 1] if index else None
            owner = toks[index - 2] if index > 1 else None
            if after is not None and after.text == "(" and tok.text in _HTTP_FUNCTIONS:
                if (
                    before is not None
                    and before.text == "."
                    and (owner is None or owner.text not in _HTTP_OWNERS)
                ):
                    continue
                self._http(tok.text, index, index + 1)
            elif (
                after is not None
                and after.text == "("
                and before is not None
                and before.text == "."
                and owner is not None
                and owner.text in ("axios", "ky", "got")
            ):
                self._http(f"{owner.text}.{tok.text}", index - 2, index + 1)
            elif tok.text == "env" and before is not None and before.text == ".":
                self._env(index, client_args)
        return self.findings

    def _http(self, label: str, first: int, paren: int) -> None:
        end = _closing(self.toks, paren)
        argument = self._statement(paren + 1)
        provider = self.provider_of(argument)
        if provider is not None:
            self.finding(
                "raw-http-provider-call",
                self.toks[first],
                self.toks[end],
                f"{label}() to the {provider} API: not tracked by llmledger",
                provider,
            )

    def _env(self, index: int, client_args: set[int]) -> None:
        # process.env.NAME, process.env["NAME"], import.meta.env.NAME
        toks = self.toks
        if index + 2 >= len(toks):
            return
        if (toks[index + 1].text == "." and toks[index + 2].kind == "ident") or (
            toks[index + 1].text == "[" and toks[index + 2].kind == "string"
        ):
            key = toks[index + 2]
        else:
            return
        if not KEY_NAME.match(key.text) or index in client_args:
            return
        self.finding(
            "provider-key-bypass",
            toks[index - 2] if index > 1 else toks[index],
            key,
            f"{key.text} read outside a tracked SDK client",
            None,
        )


def read_javascript(source: str, path: str) -> tuple[list[Finding], frozenset[int]]:
    """The findings of one JavaScript or TypeScript file, and its ignored lines.

    Example:
        >>> found, _ = read_javascript(
        ...     'const r = await fetch("https://api.openai.com/v1/chat/completions", {})', "r.ts")
        >>> [(f.rule, f.provider) for f in found]
        [('raw-http-provider-call', 'openai')]
    """
    scan = _Scan(source, path)
    return scan.scan(), scan.ignored
