#!/usr/bin/env python3
"""Checks a Grafana Alloy configuration offline: a structural check, not Alloy itself.

No Alloy binary or syntax checker can be installed on these machines (Alloy ships from
Grafana's own repositories and GitHub releases, which are out of reach). So this script:

- parses the Alloy configuration syntax (blocks, attributes, expressions, comments) and fails
  on a syntax error, with its line and column;
- knows the components the bundle uses (from the Alloy reference documentation): each block
  must be a known component (with a label, unique) or a known top-level block, each attribute
  and nested block must be one the component takes, required arguments must be present, and
  relabel `action`s must be valid;
- resolves every reference (`discovery.docker.containers.targets`) to a declared component
  and one of its exports, and checks that `forward_to` lists only receivers;
- with --require-labels, checks that relabel rules set those target labels; with
  --loki-url, that every loki.write endpoint pushes to that URL.

Usage: check_alloy.py CONFIG [--require-labels service,container] [--loki-url URL]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HTTP_CLIENT = {"bearer_token", "bearer_token_file", "proxy_url", "no_proxy", "proxy_from_environment",
               "proxy_connect_header", "follow_redirects", "enable_http2"}
HTTP_BLOCKS = {"basic_auth": {}, "authorization": {}, "oauth2": {}, "tls_config": {}}
RELABEL_RULE = {
    "args": {"source_labels", "separator", "regex", "modulus", "target_label", "replacement", "action"},
    "required": set(),
}
RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep",
                   "keepequal", "dropequal", "lowercase", "uppercase"}
# component -> arguments, required arguments, nested blocks, exports (Alloy reference docs).
COMPONENTS = {
    "discovery.docker": {
        "args": {"host", "port", "host_networking_host", "match_first_network", "refresh_interval"} | HTTP_CLIENT,
        "required": {"host"},
        "blocks": {"filter": {"args": {"name", "values"}, "required": {"name", "values"}}, **HTTP_BLOCKS},
        "exports": {"targets"},
    },
    "discovery.relabel": {
        "args": {"targets"},
        "required": {"targets"},
        "blocks": {"rule": RELABEL_RULE},
        "exports": {"output", "rules"},
    },
    "loki.source.docker": {
        "args": {"host", "targets", "forward_to", "labels", "relabel_rules", "refresh_interval"},
        "required": {"host", "targets", "forward_to"},
        "blocks": {"http_client_config": {"args": HTTP_CLIENT, "blocks": HTTP_BLOCKS}},
        "exports": set(),
    },
    "loki.process": {
        "args": {"forward_to"},
        "required": {"forward_to"},
        "blocks": {"stage.*": {"any": True}},
        "exports": {"receiver"},
    },
    "loki.write": {
        "args": {"external_labels", "max_streams"},
        "required": set(),
        "blocks": {
            "endpoint": {
                "args": {"url", "name", "headers", "batch_wait", "batch_size", "remote_timeout", "tenant_id",
                         "min_backoff_period", "max_backoff_period", "max_backoff_retries",
                         "retry_on_http_429", "retry_on_http_5xx"} | HTTP_CLIENT,
                "required": {"url"},
                "blocks": {**HTTP_BLOCKS, "queue_config": {"any": True}},
            },
            "wal": {"any": True},
        },
        "exports": {"receiver"},
    },
}
TOP_LEVEL = {
    "logging": {"args": {"level", "format", "write_to"}, "required": set()},
    "livedebugging": {"args": {"enabled"}, "required": set()},
}
LOG_LEVELS = {"debug", "info", "warn", "error"}
FUNCTIONS = {"sys.env", "env", "coalesce", "concat", "constants", "format", "join", "json_decode",
             "string.format", "string.join", "string.replace", "string.split", "string.to_lower",
             "string.to_upper", "string.trim", "encoding.from_json", "encoding.from_yaml",
             "encoding.from_base64", "array.concat", "convert.nonsensitive"}


class AlloySyntaxError(Exception):
    pass


# ---- lexer ---------------------------------------------------------------------------------
TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+)
  | (?P<nl>\n)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[{}\[\](),.=<>+\-*/%^!])
""", re.X | re.S)


@dataclass
class Tok:
    kind: str
    text: str
    line: int
    col: int


def lex(text: str) -> list[Tok]:
    toks, pos, line, line_start = [], 0, 1, 0
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m:
            raise AlloySyntaxError(f"{line}:{pos - line_start + 1}: unexpected character {text[pos]!r}")
        kind, value = m.lastgroup, m.group()
        if kind == "nl":
            toks.append(Tok("nl", "\n", line, pos - line_start + 1))
        elif kind == "block_comment" and "\n" in value:
            toks.append(Tok("nl", "\n", line, pos - line_start + 1))
        elif kind not in ("ws", "line_comment", "block_comment"):
            toks.append(Tok(kind, value, line, pos - line_start + 1))
        newlines = value.count("\n")
        if newlines:
            line += newlines
            line_start = pos + value.rindex("\n") + 1
        pos = m.end()
    toks.append(Tok("eof", "", line, pos - line_start + 1))
    return toks


# ---- parser --------------------------------------------------------------------------------
@dataclass
class Attr:
    name: str
    value: object
    line: int


@dataclass
class Block:
    name: str
    label: str | None
    line: int
    attrs: list[Attr] = field(default_factory=list)
    blocks: list["Block"] = field(default_factory=list)


@dataclass
class Ref:
    path: str
    line: int


@dataclass
class Call:
    name: str
    args: list
    line: int


class Parser:
    def __init__(self, toks: list[Tok]):
        self.toks, self.i = toks, 0

    def peek(self, skip_nl: bool = False) -> Tok:
        j = self.i
        while skip_nl and self.toks[j].kind == "nl":
            j += 1
        return self.toks[j]

    def next(self, skip_nl: bool = False) -> Tok:
        if skip_nl:
            self.skip_nl()
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def skip_nl(self):
        while self.toks[self.i].kind == "nl":
            self.i += 1

    def expect(self, text: str, skip_nl: bool = False) -> Tok:
        tok = self.next(skip_nl)
        if tok.text != text or tok.kind in ("string", "raw"):
            raise AlloySyntaxError(f"{tok.line}:{tok.col}: expected {text!r}, found {tok.text or 'end of file'!r}")
        return tok

    def body(self, closing: str | None) -> tuple[list[Attr], list[Block]]:
        attrs, blocks = [], []
        while True:
            self.skip_nl()
            tok = self.peek()
            if closing and tok.text == closing and tok.kind == "op":
                self.next()
                return attrs, blocks
            if tok.kind == "eof":
                if closing:
                    raise AlloySyntaxError(f"{tok.line}:{tok.col}: missing {closing!r}")
                return attrs, blocks
            if tok.kind != "ident":
                raise AlloySyntaxError(f"{tok.line}:{tok.col}: expected an attribute or a block, found {tok.text!r}")
            start = self.next()
            name = start.text
            if self.peek().text == "=":
                self.next()
                attrs.append(Attr(name, self.expr(), start.line))
            else:
                while self.peek().text == ".":
                    self.next()
                    part = self.next()
                    if part.kind != "ident":
                        raise AlloySyntaxError(f"{part.line}:{part.col}: bad block name after {name!r}")
                    name += "." + part.text
                label = None
                if self.peek().kind == "string":
                    label = self.next().text[1:-1]
                self.expect("{")
                block = Block(name, label, start.line)
                block.attrs, block.blocks = self.body("}")
                blocks.append(block)
            end = self.peek()
            if end.kind not in ("nl", "eof") and not (closing and end.text == closing):
                raise AlloySyntaxError(f"{end.line}:{end.col}: expected a new line after the statement, found {end.text!r}")

    BINARY = [("||",), ("&&",), ("==", "!=", "<", "<=", ">", ">="), ("+", "-"), ("*", "/", "%"), ("^",)]

    def expr(self, level: int = 0):
        if level == len(self.BINARY):
            return self.unary()
        left = self.expr(level + 1)
        while self.peek().kind == "op" and self.peek().text in self.BINARY[level]:
            self.next()
            left = ("op", left, self.expr(level + 1))
        return left

    def unary(self):
        if self.peek().kind == "op" and self.peek().text in ("!", "-"):
            self.next()
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, value):
        while True:
            tok = self.peek()
            if tok.text == "." and isinstance(value, Ref):
                self.next()
                part = self.next()
                if part.kind != "ident":
                    raise AlloySyntaxError(f"{part.line}:{part.col}: expected a field name after '.'")
                value = Ref(value.path + "." + part.text, value.line)
            elif tok.text == "[" and tok.kind == "op":
                self.next()
                index = self.expr()
                self.expect("]", skip_nl=True)
                value = ("index", value, index)
            elif tok.text == "(" and tok.kind == "op" and isinstance(value, Ref):
                self.next()
                args = self.items(")")
                value = Call(value.path, args, value.line)
            else:
                return value

    def items(self, closing: str) -> list:
        out = []
        while True:
            if self.peek(skip_nl=True).text == closing:
                self.next(skip_nl=True)
                return out
            self.skip_nl()
            out.append(self.expr())
            tok = self.next(skip_nl=True)
            if tok.text == closing:
                return out
            if tok.text != ",":
                raise AlloySyntaxError(f"{tok.line}:{tok.col}: expected ',' or {closing!r}, found {tok.text!r}")

    def primary(self):
        tok = self.next()
        if tok.kind == "string":
            return ("string", bytes(tok.text[1:-1], "utf-8").decode("unicode_escape"))
        if tok.kind == "raw":
            return ("string", tok.text[1:-1])
        if tok.kind == "number":
            return ("number", tok.text)
        if tok.kind == "ident":
            if tok.text in ("true", "false", "null"):
                return ("literal", tok.text)
            return Ref(tok.text, tok.line)
        if tok.text == "(":
            value = self.expr()
            self.expect(")", skip_nl=True)
            return value
        if tok.text == "[":
            return ("array", self.items("]"))
        if tok.text == "{":
            fields = {}
            while True:
                key = self.next(skip_nl=True)
                if key.text == "}":
                    return ("object", fields)
                if key.kind not in ("ident", "string"):
                    raise AlloySyntaxError(f"{key.line}:{key.col}: expected an object key, found {key.text!r}")
                self.expect("=")
                fields[key.text.strip('"')] = self.expr()
                sep = self.next(skip_nl=True)
                if sep.text == "}":
                    return ("object", fields)
                if sep.text != ",":
                    raise AlloySyntaxError(f"{sep.line}:{sep.col}: expected ',' or '}}', found {sep.text!r}")
        raise AlloySyntaxError(f"{tok.line}:{tok.col}: expected a value, found {tok.text or 'end of file'!r}")


def parse(text: str) -> list[Block | Attr]:
    attrs, blocks = Parser(lex(text)).body(None)
    return [*attrs, *blocks]


# ---- checks --------------------------------------------------------------------------------
def walk_values(value):
    if isinstance(value, (Ref, Call)):
        yield value
        if isinstance(value, Call):
            for arg in value.args:
                yield from walk_values(arg)
    elif isinstance(value, tuple):
        for part in value[1:]:
            if isinstance(part, list):
                for item in part:
                    yield from walk_values(item)
            elif isinstance(part, dict):
                for item in part.values():
                    yield from walk_values(item)
            else:
                yield from walk_values(part)


def check_body(block: Block, schema: dict, where: str, problems: list[str]) -> None:
    if schema.get("any"):
        return
    seen = set()
    for attr in block.attrs:
        if attr.name in seen:
            problems.append(f"{where}:{attr.line}: {attr.name} set twice")
        seen.add(attr.name)
        if attr.name not in schema.get("args", set()):
            problems.append(f"{where}:{attr.line}: {block.name} takes no argument {attr.name!r}")
    for name in sorted(schema.get("required", set()) - seen):
        problems.append(f"{where}:{block.line}: {block.name} needs the argument {name!r}")
    nested = schema.get("blocks", {})
    for child in block.blocks:
        sub = nested.get(child.name) or next(
            (s for pattern, s in nested.items() if pattern.endswith(".*") and child.name.startswith(pattern[:-1])), None)
        if sub is None:
            problems.append(f"{where}:{child.line}: {block.name} takes no block {child.name!r}")
            continue
        if child.label is not None:
            problems.append(f"{where}:{child.line}: the {child.name} block takes no label")
        check_body(child, sub, where, problems)
        if child.name == "rule":
            for attr in child.attrs:
                if attr.name == "action" and not (isinstance(attr.value, tuple) and attr.value[0] == "string"
                                                  and attr.value[1] in RELABEL_ACTIONS):
                    problems.append(f"{where}:{attr.line}: relabel action must be one of {sorted(RELABEL_ACTIONS)}")


def split_reference(path: str, components: dict[tuple[str, str], Block]) -> tuple[str, str, str] | None:
    parts = path.split(".")
    for n in range(len(parts) - 2, 0, -1):
        name, label, rest = ".".join(parts[:n]), parts[n], parts[n + 1:]
        if name in COMPONENTS:
            return name, label, ".".join(rest)
    return None


def check(text: str, where: str, require_labels: list[str], loki_url: str | None) -> list[str]:
    try:
        statements = parse(text)
    except AlloySyntaxError as err:
        return [f"{where}:{err}"]
    problems: list[str] = []
    components: dict[tuple[str, str], Block] = {}
    for stmt in statements:
        if isinstance(stmt, Attr):
            problems.append(f"{where}:{stmt.line}: attribute {stmt.name!r} outside any block")
            continue
        if stmt.name in TOP_LEVEL:
            if stmt.label is not None:
                problems.append(f"{where}:{stmt.line}: the {stmt.name} block takes no label")
            check_body(stmt, TOP_LEVEL[stmt.name], where, problems)
            for attr in stmt.attrs:
                if stmt.name == "logging" and attr.name == "level" and attr.value not in [("string", v) for v in LOG_LEVELS]:
                    problems.append(f"{where}:{attr.line}: logging level must be one of {sorted(LOG_LEVELS)}")
            continue
        if stmt.name not in COMPONENTS:
            problems.append(f"{where}:{stmt.line}: unknown component or block {stmt.name!r} "
                            f"(known here: {sorted(COMPONENTS) + sorted(TOP_LEVEL)})")
            continue
        if not stmt.label:
            problems.append(f"{where}:{stmt.line}: component {stmt.name} needs a label ({stmt.name} \"NAME\" {{ ... }})")
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", stmt.label):
            problems.append(f"{where}:{stmt.line}: label {stmt.label!r} must be an identifier")
        if (stmt.name, stmt.label) in components:
            problems.append(f"{where}:{stmt.line}: {stmt.name} \"{stmt.label}\" declared twice")
        components[(stmt.name, stmt.label)] = stmt
        check_body(stmt, COMPONENTS[stmt.name], where, problems)

    def values_of(block: Block):
        for attr in block.attrs:
            yield attr
        for child in block.blocks:
            yield from values_of(child)

    used = set()
    for (name, label), block in components.items():
        for attr in values_of(block):
            for value in walk_values(attr.value):
                if isinstance(value, Call):
                    if value.name not in FUNCTIONS:
                        problems.append(f"{where}:{value.line}: unknown function {value.name}()")
                    continue
                ref = split_reference(value.path, components)
                if ref is None:
                    problems.append(f"{where}:{value.line}: {value.path} names no component")
                    continue
                ref_name, ref_label, export = ref
                if (ref_name, ref_label) not in components:
                    problems.append(f"{where}:{value.line}: {value.path}: no {ref_name} \"{ref_label}\" is declared")
                elif export.split(".")[0] not in COMPONENTS[ref_name]["exports"]:
                    problems.append(f"{where}:{value.line}: {value.path}: {ref_name} exports "
                                    f"{sorted(COMPONENTS[ref_name]['exports']) or 'nothing'}, not {export!r}")
                else:
                    used.add((ref_name, ref_label))
                if attr.name == "forward_to" and export != "receiver":
                    problems.append(f"{where}:{value.line}: forward_to takes receivers, not {value.path}")
            if attr.name == "forward_to" and not (isinstance(attr.value, tuple) and attr.value[0] == "array"):
                problems.append(f"{where}:{attr.line}: forward_to must be a list of receivers")
    for (name, label), block in components.items():
        if COMPONENTS[name]["exports"] and (name, label) not in used:
            problems.append(f"{where}:{block.line}: {name} \"{label}\" is declared but nothing uses its exports")

    if require_labels:
        set_labels = {attr.value[1] for block in components.values() for attr in values_of(block)
                      if attr.name == "target_label" and isinstance(attr.value, tuple) and attr.value[0] == "string"}
        for label in require_labels:
            if label not in set_labels:
                problems.append(f"{where}: no relabel rule sets the label {label!r}")
    if loki_url:
        urls = [attr.value for (name, _), block in components.items() if name == "loki.write"
                for child in block.blocks if child.name == "endpoint" for attr in child.attrs if attr.name == "url"]
        if not urls:
            problems.append(f"{where}: no loki.write endpoint")
        for url in urls:
            if url != ("string", loki_url):
                problems.append(f"{where}: loki.write pushes to {url[1] if isinstance(url, tuple) else url!r}, not {loki_url}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--require-labels", default="", help="comma-separated target labels the rules must set")
    parser.add_argument("--loki-url", help="the URL every loki.write endpoint must push to")
    args = parser.parse_args()
    labels = [label for label in args.require_labels.split(",") if label]
    problems = check(args.config.read_text(), str(args.config), labels, args.loki_url)
    for problem in problems:
        print(problem)
    print(f"check_alloy: {args.config.name}, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
