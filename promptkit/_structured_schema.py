"""JSON schemas for structured output: their strict form, and checking values against them (pure).

Private to :mod:`promptkit._structured`.

* :func:`strict_form` makes a schema strict as openai-python's
  ``to_strict_json_schema`` does: ``additionalProperties: false`` on every
  object, every property required, ``$ref`` with siblings inlined, ``allOf``
  of one merged, ``"default": null`` dropped. It refuses (``None``) a schema
  with a free-form object or a value of any type, which strict mode cannot
  express, and, for a user's own schema, one with optional properties.
* :func:`schema_validator` checks values with ``jsonschema`` when that is
  installed, else with :func:`check`: types, ``required``, extra keys under
  ``additionalProperties``, ``enum``/``const``, ``anyOf``/``oneOf`` (as
  anyOf)/``allOf``, ``items``/``prefixItems`` and local ``$ref``; formats,
  patterns and numeric or length bounds are not checked.
"""

from __future__ import annotations

import copy
import importlib
import json
from typing import Any, Callable, Dict, List, Optional

from ._errors import ConfigurationError
from ._shapes import describe

__all__ = ["TYPED_KEYS", "resolve", "check_refs", "strict_form", "check", "schema_validator", "json_equal"]

TYPED_KEYS = ("type", "anyOf", "oneOf", "allOf", "$ref", "enum", "const")


def resolve(root: Dict[str, Any], ref: str) -> Any:
    """The schema that a local ``$ref`` (``#`` or ``#/$defs/Name``) points to in ``root``."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        raise ConfigurationError(f"response_format: only local $ref are supported, got {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(node, dict) or part not in node:
            raise ConfigurationError(f"response_format: $ref {ref!r} does not resolve")
        node = node[part]
    return node


def check_refs(node: Any, root: Any) -> None:
    """Raise :class:`ConfigurationError` for a ``$ref`` that is not local or does not resolve (no fetching)."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            resolve(root, node["$ref"])
        for value in node.values():
            check_refs(value, root)
    elif isinstance(node, list):
        for value in node:
            check_refs(value, root)


def _strict_problem(node: Any, path: str, *, all_required: bool) -> Optional[str]:
    """Why ``node`` cannot be made strict, or ``None``."""
    if not isinstance(node, dict):
        return None
    where = path or "the root"
    if not any(key in node for key in TYPED_KEYS) and "properties" not in node:
        return f"{where} accepts a value of any type"
    kinds: List[Any] = node["type"] if isinstance(node.get("type"), list) else [node.get("type")]
    extra = node.get("additionalProperties")
    if ("object" in kinds or "properties" in node) and (
        extra not in (None, False) or ("properties" not in node and extra is not False)
    ):
        return f"{where} is a free-form object (a dict), which strict mode cannot express"
    properties = node.get("properties")
    if all_required and isinstance(properties, dict):
        missing = [key for key in properties if key not in node.get("required", [])]
        if missing:
            return f"{where}: property {missing[0]!r} is optional (strict mode makes every property required)"
    children: List[Any] = []
    for key in ("properties", "$defs", "definitions"):
        if isinstance(node.get(key), dict):
            children += [(f"{path}.{key}.{k}".lstrip("."), v) for k, v in node[key].items()]
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(node.get(key), list):
            children += [(f"{path}.{key}[{i}]".lstrip("."), v) for i, v in enumerate(node[key])]
    if isinstance(node.get("items"), dict):
        children.append((f"{path}.items".lstrip("."), node["items"]))
    for child_path, child in children:
        problem = _strict_problem(child, child_path, all_required=all_required)
        if problem:
            return problem
    return None


def _ensure_strict(node: Dict[str, Any], root: Dict[str, Any]) -> Dict[str, Any]:
    """Make ``node`` strict in place, as openai-python's ``to_strict_json_schema`` does."""
    for key in ("$defs", "definitions"):
        if isinstance(node.get(key), dict):
            for sub in node[key].values():
                if isinstance(sub, dict):
                    _ensure_strict(sub, root)
    if node.get("type") == "object" and "additionalProperties" not in node:
        node["additionalProperties"] = False
    if isinstance(node.get("properties"), dict):
        node["required"] = list(node["properties"])
        node["properties"] = {k: _ensure_strict(v, root) for k, v in node["properties"].items()}
    if isinstance(node.get("items"), dict):
        node["items"] = _ensure_strict(node["items"], root)
    for key in ("prefixItems", "anyOf"):
        if isinstance(node.get(key), list):
            node[key] = [_ensure_strict(v, root) for v in node[key]]
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            node.update(_ensure_strict(all_of[0], root))
            node.pop("allOf")
        else:
            node["allOf"] = [_ensure_strict(v, root) for v in all_of]
    if "default" in node and node["default"] is None:
        del node["default"]  # still nullable; null and "absent" mean the same here
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:  # a $ref cannot have siblings in strict mode: inline it
        resolved = resolve(root, ref)
        node.update({**resolved, **node})
        del node["$ref"]
        return _ensure_strict(node, root)
    return node


def strict_form(schema: Dict[str, Any], *, all_required: bool) -> Optional[Dict[str, Any]]:
    """The strict form of ``schema`` (a copy), or ``None`` when it has none."""
    if _strict_problem(schema, "", all_required=all_required):
        return None
    strict = copy.deepcopy(schema)
    return _ensure_strict(strict, strict)


def _is_type(value: Any, kind: Any) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return kind == "number" or isinstance(value, int) or float(value).is_integer()


def json_equal(a: Any, b: Any) -> bool:
    return (type(a) is type(b) or not isinstance(a, bool) and not isinstance(b, bool)) and a == b


def check(schema: Any, value: Any, path: str, root: Dict[str, Any]) -> List[str]:
    """The ways ``value`` breaks ``schema``: types, required keys, enums and the combinators only."""
    if not isinstance(schema, dict):
        return [] if schema is not False else [f"{path}: no value is allowed here"]
    if isinstance(schema.get("$ref"), str):
        return check(resolve(root, schema["$ref"]), value, path, root)
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []
    if kinds and not any(_is_type(value, kind) for kind in kinds):
        return [f"{path}: expected {' or '.join(map(str, kinds))}, got {describe(value)}"]
    if "enum" in schema and not any(json_equal(value, choice) for choice in schema["enum"]):
        return [f"{path}: {describe(value)} is not one of {json.dumps(schema['enum'])[:200]}"]
    if "const" in schema and not json_equal(value, schema["const"]):
        return [f"{path}: expected {json.dumps(schema['const'])[:100]}, got {describe(value)}"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and all(check(s, value, path, root) for s in schema[key]):
            return [f"{path}: {describe(value)} matches none of the {key} alternatives"]
    errors: List[str] = []
    for sub in schema.get("allOf") or []:
        errors += check(sub, value, path, root)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        errors += [f"{path}.{key}: missing (required)" for key in schema.get("required", []) if key not in value]
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                errors += check(properties[key], item, f"{path}.{key}", root)
            elif extra is False:
                errors.append(f"{path}.{key}: not allowed (additionalProperties is false)")
            else:
                errors += check(extra, item, f"{path}.{key}", root)
    if isinstance(value, list):
        prefix = schema.get("prefixItems") or []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else schema.get("items", True)
            errors += check(sub, item, f"{path}[{i}]", root)
    return errors


def schema_validator(schema: Dict[str, Any]) -> Callable[[Any], List[str]]:
    """A check of values against ``schema``: jsonschema's when installed, else :func:`check`."""
    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:
        return lambda value: check(schema, value, "$", schema)
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigurationError(f"response_format: not a valid JSON schema: {exc.message}") from None
    validator = cls(schema)
    return lambda value: [f"{e.json_path}: {e.message}" for e in sorted(validator.iter_errors(value), key=str)]
