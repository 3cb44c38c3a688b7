"""The admin API under `/fake/` on the HTTP port: look at the fake and steer it. No authentication.

Images and operations are shown in the API's own JSON (int64 as strings); everything else is plain
JSON (sizes as numbers). Errors answer `{"error": "..."}` with 400, 404 or 409.

GET    /fake/health            {"ok": true}
GET    /fake/endpoints         FakeCloud.endpoints()
GET    /fake/key               the default service account's authorized key (`yc iam key create` JSON)
GET    /fake/requests          {"requests": [entry]}; ?method= ?transport= ?code= ?after=<seq>
                               (DesktopImageService.Update entries add "updateMask": the paths sent,
                               [] without a mask, null when the request could not be read; a call its
                               caller gave up on during injected latency shows code CANCELLED: not done)
DELETE /fake/requests          {"deleted": n}
GET    /fake/images            {"images": [DesktopImage]}; ?folderId=
POST   /fake/images/{id}       {"name"?, "description"?, "labels"?, "status"?} -> DesktopImage (drift)
DELETE /fake/images/{id}       {"deleted": id}, at once and without an operation
GET    /fake/operations        {"operations": [Operation]}
GET    /fake/desktops          {"desktops": [desktop]}
POST   /fake/desktops          {"folderId", "id"?, "name"?, "status"?, "storageSize"?, "minDiskSize"?} -> 201
POST   /fake/desktops/{id}     {"status"?, "name"?, "storageSize"?, "minDiskSize"?} -> desktop
GET    /fake/compute-images    {"computeImages": [computeImage]}
POST   /fake/compute-images    {"id"?, "folderId"?, "name"?, "storageSize"?, "minDiskSize"?} -> 201
GET    /fake/folders           {"clouds": [{"id", "name"}], "folders": [{"id", "cloudId", "name"}]}
POST   /fake/folders           {"id"?, "cloudId"?, "name"?} -> 201 (a new cloudId creates that cloud)
GET    /fake/service-accounts  {"serviceAccounts": [{"id", "name", "keyIds"}]}
POST   /fake/service-accounts  {"name"?} -> 201 with the new account's authorized key
POST   /fake/tokens            {"serviceAccountId"?, "ttlSeconds"?} -> {"iamToken", "expiresAt"}
GET    /fake/faults            {"faults": [rule]}
POST   /fake/faults            rule -> 201 rule (see faults.FaultRule)
DELETE /fake/faults            {"deleted": n}
DELETE /fake/faults/{id}       {"deleted": 1}
GET    /fake/config            FakeCloudConfig.to_json()
POST   /fake/config            some of its fields -> the whole config (e.g. {"honorIdempotency": false},
                               {"strictCopyFields": true})
POST   /fake/reset             {"reset": true}; the config stays as it is
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web
from yandex.cloud.clouddesktop.v1 import desktop_image_pb2, desktop_pb2

from desktop_image_operator_dev.fakecloud import ids, model, operations, seeds
from desktop_image_operator_dev.fakecloud.clock import rfc3339
from desktop_image_operator_dev.fakecloud.codes import ApiError
from desktop_image_operator_dev.fakecloud.model import ComputeImage, Desktop, Folder
from desktop_image_operator_dev.fakecloud.protojson import dumps, from_json, to_json
from desktop_image_operator_dev.fakecloud.state import FakeState

PREFIX = "/fake"
DESKTOP_STATUSES = frozenset(desktop_pb2.Desktop.Status.keys())
IMAGE_STATUSES = frozenset(desktop_image_pb2.DesktopImage.Status.keys()) - {"STATUS_UNSPECIFIED"}


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _reply(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, text=dumps(data), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AdminError(400, f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise AdminError(400, "body must be a JSON object")
    return data


def _string(data: Mapping[str, object], name: str, default: str | None = None) -> str:
    value = data.get(name, default)
    if not isinstance(value, str) or not value:
        raise AdminError(400, f"{name} must be a non-empty string")
    return value


def _size(data: Mapping[str, object], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AdminError(400, f"{name} must be a non-negative integer")
    return value


def _handled(
    handler: Callable[[web.Request], Any],
) -> Callable[[web.Request], Any]:
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except AdminError as exc:
            return _reply({"error": str(exc)}, exc.status)
        except (ValueError, ApiError) as exc:
            return _reply({"error": str(exc)}, 400)

    return wrapper


class AdminApi:
    def __init__(
        self,
        state: FakeState,
        endpoints: Callable[[], dict[str, str]],
        default_key: Callable[[], dict[str, str]],
    ) -> None:
        self._state = state
        self._endpoints = endpoints
        self._default_key = default_key

    def routes(self) -> list[web.RouteDef]:
        handlers: list[tuple[str, str, Callable[[web.Request], Any]]] = [
            ("GET", "/health", self.health),
            ("GET", "/endpoints", self.endpoints),
            ("GET", "/key", self.key),
            ("GET", "/requests", self.requests),
            ("DELETE", "/requests", self.clear_requests),
            ("GET", "/images", self.images),
            ("POST", "/images/{image_id}", self.change_image),
            ("DELETE", "/images/{image_id}", self.delete_image),
            ("GET", "/operations", self.operations),
            ("GET", "/desktops", self.desktops),
            ("POST", "/desktops", self.add_desktop),
            ("POST", "/desktops/{desktop_id}", self.change_desktop),
            ("GET", "/compute-images", self.compute_images),
            ("POST", "/compute-images", self.add_compute_image),
            ("GET", "/folders", self.folders),
            ("POST", "/folders", self.add_folder),
            ("GET", "/service-accounts", self.service_accounts),
            ("POST", "/service-accounts", self.add_service_account),
            ("POST", "/tokens", self.issue_token),
            ("GET", "/faults", self.faults),
            ("POST", "/faults", self.add_fault),
            ("DELETE", "/faults", self.clear_faults),
            ("DELETE", "/faults/{fault_id}", self.delete_fault),
            ("GET", "/config", self.config),
            ("POST", "/config", self.change_config),
            ("POST", "/reset", self.reset),
        ]
        return [web.route(method, PREFIX + path, _handled(handler)) for method, path, handler in handlers]

    async def health(self, request: web.Request) -> web.Response:
        return _reply({"ok": True})

    async def endpoints(self, request: web.Request) -> web.Response:
        return _reply(self._endpoints())

    async def key(self, request: web.Request) -> web.Response:
        return _reply(self._default_key())

    async def requests(self, request: web.Request) -> web.Response:
        query = request.query
        after = query.get("after", "0")
        if not after.isdigit():
            raise AdminError(400, "after must be a non-negative integer")
        entries = self._state.requests.entries(
            method=query.get("method") or None,
            transport=query.get("transport") or None,
            code=query.get("code") or None,
            after=int(after),
        )
        return _reply({"requests": entries})

    async def clear_requests(self, request: web.Request) -> web.Response:
        count = len(self._state.requests)
        self._state.requests.clear()
        return _reply({"deleted": count})

    async def images(self, request: web.Request) -> web.Response:
        operations.settle(self._state)
        folder_id = request.query.get("folderId")
        found = [
            image
            for image in self._state.images.values()
            if folder_id is None or image.folder_id == folder_id
        ]
        return _reply({"images": [to_json(image.to_proto()) for image in found]})

    async def change_image(self, request: web.Request) -> web.Response:
        """Change an image behind the API's back (drift)."""
        operations.settle(self._state)
        image = self._image(request)
        data = await _body(request)
        status = data.pop("status", None)
        if status is not None and status not in IMAGE_STATUSES:
            raise AdminError(400, f"status must be one of {', '.join(sorted(IMAGE_STATUSES))}")
        unknown = set(data) - {"name", "description", "labels"}
        if unknown:
            raise AdminError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        message = from_json(data, desktop_image_pb2.DesktopImage)
        if "name" in data:
            image.name = message.name
        if "description" in data:
            image.description = message.description
        if "labels" in data:
            image.labels = dict(message.labels)
        if status is not None:
            image.status = desktop_image_pb2.DesktopImage.Status.Value(status)
        return _reply(to_json(image.to_proto()))

    async def delete_image(self, request: web.Request) -> web.Response:
        """Remove an image at once, without an operation (as if someone deleted it elsewhere)."""
        operations.settle(self._state)
        image = self._image(request)
        del self._state.images[image.id]
        return _reply({"deleted": image.id})

    async def operations(self, request: web.Request) -> web.Response:
        operations.settle(self._state)
        found = [operations.rest_json(operations.to_proto(op)) for op in self._state.operations.values()]
        return _reply({"operations": found})

    async def desktops(self, request: web.Request) -> web.Response:
        return _reply({"desktops": [desktop.to_json() for desktop in self._state.desktops.values()]})

    async def add_desktop(self, request: web.Request) -> web.Response:
        data = await _body(request)
        folder = self._folder(_string(data, "folderId"))
        desktop = Desktop(
            id=_string(data, "id", ids.new_id("e3v")),
            folder_id=folder.id,
            name=_string(data, "name", "desktop"),
            status=self._desktop_status(data.get("status", "STOPPED")),
            storage_size=_size(data, "storageSize", 10 << 30),
            min_disk_size=_size(data, "minDiskSize", 20 << 30),
            created_at=self._state.clock(),
        )
        if desktop.id in self._state.desktops:
            raise AdminError(409, f"desktop {desktop.id} already exists")
        self._state.desktops[desktop.id] = desktop
        return _reply(desktop.to_json(), 201)

    async def change_desktop(self, request: web.Request) -> web.Response:
        desktop = self._state.desktops.get(request.match_info["desktop_id"])
        if desktop is None:
            raise AdminError(404, f"desktop {request.match_info['desktop_id']} not found")
        data = await _body(request)
        unknown = set(data) - {"status", "name", "storageSize", "minDiskSize"}
        if unknown:
            raise AdminError(400, f"unknown field(s): {', '.join(sorted(unknown))}")
        if "status" in data:
            desktop.status = self._desktop_status(data["status"])
        if "name" in data:
            desktop.name = _string(data, "name")
        desktop.storage_size = _size(data, "storageSize", desktop.storage_size)
        desktop.min_disk_size = _size(data, "minDiskSize", desktop.min_disk_size)
        return _reply(desktop.to_json())

    async def compute_images(self, request: web.Request) -> web.Response:
        return _reply({"computeImages": [image.to_json() for image in self._state.compute_images.values()]})

    async def add_compute_image(self, request: web.Request) -> web.Response:
        data = await _body(request)
        image = ComputeImage(
            id=_string(data, "id", ids.new_id("fd8")),
            folder_id=_string(data, "folderId", seeds.STANDARD_IMAGES_FOLDER_ID),
            name=_string(data, "name", "image"),
            storage_size=_size(data, "storageSize", 10 << 30),
            min_disk_size=_size(data, "minDiskSize", 20 << 30),
        )
        if image.id in self._state.compute_images:
            raise AdminError(409, f"compute image {image.id} already exists")
        self._state.compute_images[image.id] = image
        return _reply(image.to_json(), 201)

    async def folders(self, request: web.Request) -> web.Response:
        return _reply(
            {
                "clouds": [cloud.to_json() for cloud in self._state.clouds.values()],
                "folders": [folder.to_json() for folder in self._state.folders.values()],
            }
        )

    async def add_folder(self, request: web.Request) -> web.Response:
        """Add a folder; its cloud is created too when new, so tests can get a fresh quota."""
        data = await _body(request)
        folder = Folder(
            id=_string(data, "id", ids.new_id("b1g")),
            cloud_id=_string(data, "cloudId", ids.new_id("b1g")),
            name=_string(data, "name", "folder"),
        )
        if folder.id in self._state.folders:
            raise AdminError(409, f"folder {folder.id} already exists")
        if folder.cloud_id not in self._state.clouds:
            self._state.clouds[folder.cloud_id] = model.Cloud(folder.cloud_id, folder.cloud_id)
        self._state.folders[folder.id] = folder
        return _reply(folder.to_json(), 201)

    async def service_accounts(self, request: web.Request) -> web.Response:
        accounts = [account.to_json() for account in self._state.iam.accounts.values()]
        return _reply({"serviceAccounts": accounts})

    async def add_service_account(self, request: web.Request) -> web.Response:
        """A new service account with one key; the answer is its authorized key file."""
        data = await _body(request)
        account = self._state.iam.create_service_account(_string(data, "name", "service-account"))
        return _reply(self._state.iam.create_key(account.id).to_json(), 201)

    async def issue_token(self, request: web.Request) -> web.Response:
        """A plain IAM token, as a person would paste one."""
        data = await _body(request)
        account_id = data.get("serviceAccountId") or next(iter(self._state.iam.accounts))
        ttl = data.get("ttlSeconds")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl < 0):
            raise AdminError(400, "ttlSeconds must be a non-negative number")
        if not isinstance(account_id, str) or account_id not in self._state.iam.accounts:
            raise AdminError(404, f"service account {account_id} not found")
        token, issued = self._state.iam.issue_token(account_id, None if ttl is None else float(ttl))
        return _reply({"iamToken": token, "expiresAt": rfc3339(issued.expires_at)})

    async def faults(self, request: web.Request) -> web.Response:
        return _reply({"faults": [rule.to_json() for rule in self._state.faults.rules()]})

    async def add_fault(self, request: web.Request) -> web.Response:
        return _reply(self._state.faults.add(await _body(request)).to_json(), 201)

    async def clear_faults(self, request: web.Request) -> web.Response:
        return _reply({"deleted": self._state.faults.clear()})

    async def delete_fault(self, request: web.Request) -> web.Response:
        fault_id = request.match_info["fault_id"]
        if not self._state.faults.remove(fault_id):
            raise AdminError(404, f"fault {fault_id} not found")
        return _reply({"deleted": 1})

    async def config(self, request: web.Request) -> web.Response:
        return _reply(self._state.config.to_json())

    async def change_config(self, request: web.Request) -> web.Response:
        self._state.config.update_from_json(await _body(request))
        self._state.requests.resize(self._state.config.request_log_size)
        return _reply(self._state.config.to_json())

    async def reset(self, request: web.Request) -> web.Response:
        self._state.reset()
        return _reply({"reset": True})

    # Helpers

    def _image(self, request: web.Request) -> model.Image:
        image = self._state.images.get(request.match_info["image_id"])
        if image is None:
            raise AdminError(404, f"image {request.match_info['image_id']} not found")
        return image

    def _folder(self, folder_id: str) -> Folder:
        folder = self._state.folders.get(folder_id)
        if folder is None:
            raise AdminError(404, f"folder {folder_id} not found")
        return folder

    def _desktop_status(self, value: object) -> str:
        if not isinstance(value, str) or value not in DESKTOP_STATUSES:
            raise AdminError(400, f"status must be one of {', '.join(sorted(DESKTOP_STATUSES))}")
        return value
