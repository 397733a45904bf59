"""MkDocs hook: the HTTP API reference, generated from the app's own OpenAPI schema at build time.

A page that holds the line ``<!-- openapi -->`` gets, in its place, one section per endpoint (method,
path, summary, description, parameters, request body and responses) read from ``api.app``; the
schema itself is written beside the site as ``openapi.json``. Nothing is copied by hand, so the
reference cannot drift from the code. Building the app loads neither the model nor the index.
"""

from __future__ import annotations

import json
from functools import cache

MARKER = "<!-- openapi -->"


@cache
def schema() -> dict:
    from api.app import create_app

    return create_app(load_in_background=True).openapi()


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _type(spec: dict) -> str:
    if "$ref" in spec:
        name = spec["$ref"].rsplit("/", 1)[-1]
        return f"`{name}`"
    if "anyOf" in spec:
        return " or ".join(_type(s) for s in spec["anyOf"])
    if spec.get("type") == "array":
        return f"array of {_type(spec.get('items', {}))}"
    return f"`{spec.get('type', 'any')}`"


def _operation(method: str, path: str, op: dict) -> list[str]:
    lines = [f"### `{method.upper()} {path}`", ""]
    if op.get("summary"):
        lines += [f"**{op['summary']}**", ""]
    if op.get("description"):
        lines += [op["description"].strip(), ""]
    params = op.get("parameters", [])
    if params:
        lines += ["| parameter | in | type | required | description |", "| --- | --- | --- | --- | --- |"]
        for p in params:
            lines.append(
                f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | {'yes' if p.get('required') else 'no'} "
                f"| {_cell(p.get('description', '') or p.get('schema', {}).get('description', ''))} |"
            )
        lines.append("")
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        lines += [f"Request body ({media}): {_type(content.get('schema', {}))}", ""]
    responses = op.get("responses", {})
    if responses:
        lines += ["| status | meaning | body |", "| --- | --- | --- |"]
        for status, response in responses.items():
            kinds = ", ".join(f"{media} {_type(c.get('schema', {}))}" for media, c in response.get("content", {}).items())
            lines.append(f"| {status} | {_cell(response.get('description', ''))} | {kinds or '-'} |")
        lines.append("")
    return lines


def _models(components: dict) -> list[str]:
    lines = ["### Schemas", ""]
    for name, spec in sorted(components.items()):
        lines += [f"#### `{name}`", ""]
        if spec.get("description"):
            lines += [_cell(spec["description"]), ""]
        props = spec.get("properties", {})
        if props:
            required = set(spec.get("required", []))
            lines += ["| field | type | required | description |", "| --- | --- | --- | --- |"]
            for field, fs in props.items():
                lines.append(f"| `{field}` | {_type(fs)} | {'yes' if field in required else 'no'} | {_cell(fs.get('description', ''))} |")
            lines.append("")
    return lines


def reference() -> str:
    spec = schema()
    lines = [
        f"Generated from the app (`{spec['info']['title']}` {spec['info']['version']}) when the site is built; "
        "the schema itself is [openapi.json](openapi.json), and a running server serves it at `/openapi.json` "
        "with an interactive page at `/docs`.",
        "",
    ]
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            lines += _operation(method, path, op)
    lines += _models(spec.get("components", {}).get("schemas", {}))
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())


def on_files(files, config):
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(schema(), indent=1)))
    return files
