"""The life of an operation, and the Operation service.

Operations need no background task: each is settled when a call (or an admin read) finds the clock
past its due time, so every read sees a consistent image status.
"""

from __future__ import annotations

import heapq
from typing import Any

from google.protobuf import empty_pb2
from yandex.cloud.operation import operation_pb2, operation_service_pb2

from desktop_image_operator_dev.fakecloud import ids, model
from desktop_image_operator_dev.fakecloud.clock import to_timestamp
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.model import Image, Operation, OperationKind
from desktop_image_operator_dev.fakecloud.protojson import pack, status, to_json
from desktop_image_operator_dev.fakecloud.state import FakeState
from desktop_image_operator_dev.fakecloud.validation import validate

CANCELLED_MESSAGE = "Operation was cancelled"


def start(
    state: FakeState,
    kind: OperationKind,
    image: Image,
    principal: str,
    duration: float,
    planned_error: tuple[StatusCode, str] | None = None,
    changes: dict[str, object] | None = None,
) -> Operation:
    now = state.clock()
    operation = Operation(
        id=ids.new_id("e3v"),
        kind=kind,
        image_id=image.id,
        created_by=principal,
        created_at=now,
        due_at=now + max(duration, 0.0),
        modified_at=now,
        planned_error=planned_error,
        changes=dict(changes or {}),
    )
    state.operations[operation.id] = operation
    image.busy_operation_id = operation.id
    state.schedule(operation)
    settle(state)
    return operation


def settle(state: FakeState) -> None:
    """Finish every operation whose time has come."""
    pending = state.pending
    now = state.clock()
    while pending and pending[0][0] <= now:
        _, _, operation_id = heapq.heappop(pending)
        operation = state.operations.get(operation_id)
        if operation is not None and not operation.done:
            _complete(state, operation)


def cancel(state: FakeState, operation: Operation) -> None:
    """Best effort, like the cloud: a running operation ends at once with CANCELLED and is rolled back."""
    if operation.done:
        return
    operation.planned_error = (StatusCode.CANCELLED, CANCELLED_MESSAGE)
    operation.due_at = state.clock()
    _complete(state, operation)


def _complete(state: FakeState, operation: Operation) -> None:
    image = state.images.get(operation.image_id)
    error = operation.planned_error or _succeed(state, operation, image)
    if error is not None:
        _roll_back(state, operation, image)
        operation.error = error
        operation.response = None
    operation.done = True
    operation.modified_at = operation.due_at
    if image is not None and image.busy_operation_id == operation.id:
        image.busy_operation_id = None


def _succeed(state: FakeState, operation: Operation, image: Image | None) -> tuple[StatusCode, str] | None:
    kind = operation.kind
    if kind is model.DELETE:
        state.images.pop(operation.image_id, None)
        operation.response = pack(empty_pb2.Empty())
        return None
    if image is None:
        return StatusCode.NOT_FOUND, f"Desktop image {operation.image_id} no longer exists"
    if kind is model.UPDATE:
        name = operation.changes.get("name")
        conflict = name_conflict(state, image.folder_id, name, image.id) if isinstance(name, str) else None
        if conflict is not None:
            return conflict
        for field, value in operation.changes.items():
            setattr(image, field, value)
    else:
        image.status = model.IMAGE_ACTIVE
    operation.response = pack(image.to_proto())
    return None


def _roll_back(state: FakeState, operation: Operation, image: Image | None) -> None:
    if image is None:
        return
    if operation.kind in (model.COPY, model.COPY_FROM_DESKTOP):
        state.images.pop(image.id, None)
    elif operation.kind is model.DELETE:
        image.status = model.IMAGE_ACTIVE


def name_conflict(
    state: FakeState, folder_id: str, name: str, except_id: str = ""
) -> tuple[StatusCode, str] | None:
    """ALREADY_EXISTS when another image in the folder has this name (images without a name never clash)."""
    if name and any(
        image.folder_id == folder_id and image.name == name and image.id != except_id
        for image in state.images.values()
    ):
        return (
            StatusCode.ALREADY_EXISTS,
            f"Desktop image with name {name!r} already exists in folder {folder_id}",
        )
    return None


def to_proto(operation: Operation) -> operation_pb2.Operation:
    result = operation_pb2.Operation(
        id=operation.id,
        description=operation.kind.description,
        created_at=to_timestamp(operation.created_at),
        created_by=operation.created_by,
        modified_at=to_timestamp(operation.modified_at),
        done=operation.done,
        metadata=pack(operation.kind.metadata_type(image_id=operation.image_id)),
    )
    if operation.error is not None:
        result.error.CopyFrom(status(*operation.error))
    elif operation.response is not None:
        result.response.CopyFrom(operation.response)
    return result


def rest_json(operation: operation_pb2.Operation) -> dict[str, Any]:
    """An operation in REST JSON; the cloud always says whether it is done, even when it is not."""
    body = to_json(operation)
    body.setdefault("done", False)
    return body


class OperationService:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def get(
        self, request: operation_service_pb2.GetOperationRequest, ctx: CallContext
    ) -> operation_pb2.Operation:
        validate(request)
        return to_proto(self._state.operation(request.operation_id))

    def cancel(
        self, request: operation_service_pb2.CancelOperationRequest, ctx: CallContext
    ) -> operation_pb2.Operation:
        validate(request)
        operation = self._state.operation(request.operation_id)
        cancel(self._state, operation)
        return to_proto(operation)


def require_idle(image: Image) -> None:
    if image.busy_operation_id is not None:
        raise ApiError(
            StatusCode.FAILED_PRECONDITION,
            f"Desktop image {image.id} is busy with operation {image.busy_operation_id}; wait for it to end",
        )
