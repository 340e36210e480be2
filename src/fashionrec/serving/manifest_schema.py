"""Strict structural validation of KServe custom resources against the OpenAPI models that KServe's own SDK is
generated from (``kserve.models``, with the Kubernetes core types of ``kubernetes.client.models``).

Every key must be a field of its type (so a typo fails), and every value must have the field's type. Core
Kubernetes objects are validated by kubernetes-validate instead (the real API schemas).
"""

from __future__ import annotations

import re
from typing import Any

KINDS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
}
_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (object,),
    "datetime": (str,),
    "date": (str,),
    "ResourceQuantity": (str, int, float),
}


def _model_class(name: str) -> Any:
    import kserve.models as kserve_models
    import kubernetes.client.models as core

    for module in (kserve_models, core):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


def _check(value: Any, type_name: str, path: str, errors: list[str]) -> None:
    if (match := re.fullmatch(r"list\[(.+)\]", type_name)) is not None:
        if not isinstance(value, list):
            errors.append(f"{path}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, match.group(1), f"{path}[{i}]", errors)
        return
    if (match := re.fullmatch(r"dict\((\w+), (.+)\)", type_name)) is not None:
        if not isinstance(value, dict):
            errors.append(f"{path}: expected a mapping, got {type(value).__name__}")
            return
        for key, item in value.items():
            _check(item, match.group(2), f"{path}.{key}", errors)
        return
    if type_name in _SCALARS:
        allowed = _SCALARS[type_name]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed and type_name != "object"):
            errors.append(f"{path}: expected {type_name}, got {type(value).__name__} {value!r}")
        return
    cls = _model_class(type_name)
    if not isinstance(value, dict):
        errors.append(f"{path}: expected a {type_name} object, got {type(value).__name__}")
        return
    fields = {json_key: cls.openapi_types[attr] for attr, json_key in cls.attribute_map.items()}
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            _check(item, fields[key], f"{path}.{key}", errors)


def validate_custom_resource(document: dict[str, Any]) -> list[str]:
    """Problems found in a KServe custom resource; empty when it is valid."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key not in KINDS:
        return [f"not a known KServe kind: {key}"]
    errors: list[str] = []
    _check(document, KINDS[key], document.get("kind", ""), errors)
    return errors
