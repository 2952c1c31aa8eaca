"""A small synchronous client of the control-plane HTTP API, used by the CLI."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from typing import Any

import httpx

from pilotfish.api import kinds
from pilotfish.api.kinds import APPLY_PATH, DELETE_PATH, PROXY_STATUS_PATH, KindInfo
from pilotfish.errors import ApiError


class ApiClient:
    def __init__(self, server: str, token: str, timeout: float = 30.0, ca_file: str = "") -> None:
        self.server = server.rstrip("/")
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._http = httpx.Client(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=timeout,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            resp = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ApiError(
                0,
                f"cannot reach the Pilotfish control plane at {self.server}: is it running? "
                "(start it with `pilotfish server` or `pilotfish up`)",
            ) from None
        except httpx.HTTPError as e:
            raise ApiError(0, f"request to {self.server}{path} failed: {e}") from None
        return _decode(resp)

    # -- resources

    def list_objects(
        self, info: KindInfo, namespace: str | None, label_selector: str | None = None
    ) -> dict[str, Any]:
        params = {"labelSelector": label_selector} if label_selector else None
        ns = namespace if info.namespaced else None
        result: dict[str, Any] = self.request("GET", info.api_path(ns), params=params)
        return result

    def get(self, info: KindInfo, namespace: str | None, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", info.api_path(namespace if info.namespaced else None, name)
        )
        return result

    def put(self, info: KindInfo, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        ns = meta.get("namespace") if info.namespaced else None
        result: dict[str, Any] = self.request("PUT", info.api_path(ns, meta["name"]), json=body)
        return result

    def create(self, info: KindInfo, body: dict[str, Any]) -> dict[str, Any]:
        ns = body["metadata"].get("namespace") if info.namespaced else None
        result: dict[str, Any] = self.request("POST", info.api_path(ns), json=body)
        return result

    def apply(
        self,
        items: list[dict[str, Any]],
        sources: list[dict[str, Any]],
        namespace: str | None,
        dry_run: bool,
        diff: bool = False,
    ) -> dict[str, Any]:
        body = {"items": items, "sources": sources, "namespace": namespace, "dryRun": dry_run}
        if diff:
            body["diff"] = True
        result: dict[str, Any] = self.request("POST", APPLY_PATH, json=body)
        return result

    def delete(
        self,
        items: list[dict[str, str]],
        namespace: str | None,
        ignore_not_found: bool = False,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        body = {
            "items": items,
            "namespace": namespace,
            "ignoreNotFound": ignore_not_found,
            "dryRun": dry_run,
        }
        result: dict[str, Any] = self.request("POST", DELETE_PATH, json=body)
        return result

    def mesh_config(self) -> dict[str, Any]:
        """The mesh config in force (``pilotfish get meshconfig``)."""
        result: dict[str, Any] = self.request("GET", kinds.MESH_CONFIG_PATH)
        return result

    def explain(
        self, namespace: str, name: str, method: str, url: str, headers: dict[str, str]
    ) -> dict[str, Any]:
        """How proxy ``namespace``/``name``'s config would handle a request (``x explain``)."""
        body = {"method": method, "url": url, "headers": headers}
        result: dict[str, Any] = self.request(
            "POST", kinds.proxy_explain_path(namespace, name), json=body
        )
        return result

    def proxy_status(self) -> list[dict[str, Any]]:
        result = self.request("GET", PROXY_STATUS_PATH)
        return list(result.get("items") or [])

    def watch(self, info: KindInfo, namespace: str | None) -> Iterator[dict[str, Any]]:
        ns = namespace if info.namespaced else None
        with self._http.stream(
            "GET", info.api_path(ns), params={"watch": "true"}, timeout=None
        ) as resp:
            if resp.status_code >= 400:
                resp.read()
                _decode(resp)
            for line in resp.iter_lines():
                if line.strip():
                    yield json.loads(line)


def _decode(resp: httpx.Response) -> Any:
    ctype = resp.headers.get("content-type", "")
    try:
        body: Any = resp.json() if "json" in ctype else resp.text
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        if isinstance(body, dict) and body.get("kind") == "Status":
            raise ApiError(resp.status_code, str(body.get("message")))
        raise ApiError(resp.status_code, f"HTTP {resp.status_code}: {body}")
    return body
