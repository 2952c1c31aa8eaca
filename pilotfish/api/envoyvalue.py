"""EnvoyFilter patch values: Istio's rules for turning a patch's JSON into Envoy protos.

A patch ``value`` is Envoy config written as JSON (YAML): ``json_format`` parses it into the
proto that ``applyTo`` names (a ``Listener``, an ``HttpFilter``, a ``Cluster``...), resolving
every ``@type`` through the type registry of xds-protos (``message_class``: the message's
package is imported on first use, so any type xds-protos ships resolves, and a type it does
not ship is an error naming the field). ``TypedStruct`` (``udpa.type.v1`` and
``xds.type.v3``), as tutorials write filter configs, is turned into the typed message it
stands for, so its fields are checked the same way and MERGE can reach into it.

``merge`` is Istio's MERGE: protobuf merge semantics (set scalars overwrite, messages merge
recursively, lists append) except that a ``Duration`` is replaced as a whole and an ``Any``
holding the same type is merged inside; ``replace_lists`` (MERGE_AND_REPLACE_LIST) makes a
list given in the patch replace the existing list instead of extending it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

TYPE_PREFIX = "type.googleapis.com/"
TYPED_STRUCTS = (
    "type.googleapis.com/udpa.type.v1.TypedStruct",
    "type.googleapis.com/xds.type.v3.TypedStruct",
)

#: The message each ``applyTo`` patches (module, message).
APPLY_TO_MESSAGE: dict[str, tuple[str, str]] = {
    "LISTENER": ("envoy.config.listener.v3.listener_pb2", "Listener"),
    "FILTER_CHAIN": ("envoy.config.listener.v3.listener_components_pb2", "FilterChain"),
    "NETWORK_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "Filter"),
    "LISTENER_FILTER": ("envoy.config.listener.v3.listener_components_pb2", "ListenerFilter"),
    "HTTP_FILTER": (
        "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
        "HttpFilter",
    ),
    "ROUTE_CONFIGURATION": ("envoy.config.route.v3.route_pb2", "RouteConfiguration"),
    "VIRTUAL_HOST": ("envoy.config.route.v3.route_components_pb2", "VirtualHost"),
    "HTTP_ROUTE": ("envoy.config.route.v3.route_components_pb2", "Route"),
    "CLUSTER": ("envoy.config.cluster.v3.cluster_pb2", "Cluster"),
    "EXTENSION_CONFIG": ("envoy.config.core.v3.extension_pb2", "TypedExtensionConfig"),
    "BOOTSTRAP": ("envoy.config.bootstrap.v3.bootstrap_pb2", "Bootstrap"),
}


class PatchValueError(ValueError):
    """A patch value that cannot become the proto it patches: ``path`` inside the value
    (``typed_config.value.token_bucket``, empty for the value itself) and the reason."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason


_imported: set[str] = set()


def message_class(type_url: str) -> type[Message] | None:
    """The message class of ``type_url`` (``type.googleapis.com/envoy...LocalRateLimit``),
    importing the modules of its proto package on first use; None when no installed proto
    defines it."""
    full = type_url.rsplit("/", 1)[-1]
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName(full)
    except KeyError:
        package = full.rsplit(".", 1)[0]
        while package and package not in _imported:
            _imported.add(package)
            try:
                mod = importlib.import_module(package)
            except ImportError:
                package = package.rsplit(".", 1)[0] if "." in package else ""
                continue
            for info in pkgutil.iter_modules(getattr(mod, "__path__", [])):
                if info.name.endswith("_pb2"):
                    importlib.import_module(f"{package}.{info.name}")
            break
        try:
            desc = pool.FindMessageTypeByName(full)
        except KeyError:
            return None
    return message_factory.GetMessageClass(desc)


def apply_to_class(apply_to: str) -> type[Message]:
    module, name = APPLY_TO_MESSAGE[apply_to]
    cls: type[Message] = getattr(importlib.import_module(module), name)
    return cls


def _unwrap(value: Any, path: str) -> Any:
    """``value`` with every TypedStruct replaced by the typed JSON it stands for; raises
    PatchValueError for an ``@type`` no installed proto defines."""
    if isinstance(value, list):
        return [_unwrap(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    here = f"{path}." if path else ""
    type_url = value.get("@type")
    if isinstance(type_url, str) and type_url in TYPED_STRUCTS:
        inner = value.get("type_url", value.get("typeUrl"))
        if not isinstance(inner, str) or not inner:
            raise PatchValueError(f"{here}type_url", "TypedStruct needs the type_url it holds")
        if message_class(inner) is None:
            raise PatchValueError(f"{here}type_url", f"referenced type unknown: {inner}")
        body = value.get("value") or {}
        if not isinstance(body, dict):
            raise PatchValueError(f"{here}value", "TypedStruct value must be an object")
        return {"@type": inner, **_unwrap(body, f"{here}value")}
    if isinstance(type_url, str) and message_class(type_url) is None:
        raise PatchValueError(f"{here}@type", f"referenced type unknown: {type_url}")
    return {k: _unwrap(v, f"{here}{k}") for k, v in value.items()}


def parse_value(apply_to: str, value: Any) -> Message:
    """The proto ``applyTo`` patches, from a patch ``value``; PatchValueError when it does not
    parse (unknown field or type, wrong value), naming the field."""
    if not isinstance(value, dict):
        raise PatchValueError("", "patch value must be an object")
    cls = apply_to_class(apply_to)
    msg = cls()
    try:
        json_format.ParseDict(_unwrap(value, ""), msg)
    except json_format.ParseError as exc:
        raise PatchValueError("", f"not a valid {cls.DESCRIPTOR.full_name}: {exc}") from exc
    return msg


def unpack(any_msg: any_pb2.Any) -> Message | None:
    cls = message_class(any_msg.type_url)
    if cls is None:
        return None
    msg = cls()
    if not any_msg.Unpack(msg):
        return None
    return msg


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg, type_url_prefix="type.googleapis.com/")
    return out


_REPLACED = {
    "google.protobuf.Duration",
    "google.protobuf.Timestamp",
}


def _merge_any(dst: any_pb2.Any, src: any_pb2.Any, replace_lists: bool) -> None:
    if dst.type_url != src.type_url:
        dst.CopyFrom(src)
        return
    a, b = unpack(dst), unpack(src)
    if a is None or b is None:
        dst.CopyFrom(src)
        return
    merge(a, b, replace_lists=replace_lists)
    dst.CopyFrom(pack(a))


def merge(dst: Message, src: Message, *, replace_lists: bool = False) -> None:
    """Merge ``src`` into ``dst`` in place, as Istio's MERGE (see the module doc)."""
    for field, value in src.ListFields():
        if field.is_repeated:
            target = getattr(dst, field.name)
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                if replace_lists:
                    target.clear()
                value_field = field.message_type.fields_by_name["value"]
                for k, v in value.items():
                    if value_field.message_type is not None:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
                continue
            if replace_lists:
                del target[:]
            target.extend(value)
        elif field.message_type is not None:
            name = field.message_type.full_name
            if name in _REPLACED or not dst.HasField(field.name):
                getattr(dst, field.name).CopyFrom(value)
            elif name == "google.protobuf.Any":
                _merge_any(getattr(dst, field.name), value, replace_lists)
            else:
                merge(getattr(dst, field.name), value, replace_lists=replace_lists)
        else:
            setattr(dst, field.name, value)


def find_typed_configs(value: Any) -> list[tuple[str, str]]:
    """Every ``@type`` (after unwrapping TypedStructs) of a patch value with its path."""
    out: list[tuple[str, str]] = []

    def walk(v: Any, path: str) -> None:
        if isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, f"{path}[{i}]")
        elif isinstance(v, dict):
            t = v.get("@type")
            if isinstance(t, str):
                out.append((path, t))
            for k, item in v.items():
                walk(item, f"{path}.{k}" if path else k)

    walk(value, "")
    return out
