"""DesktopImageService: the rules of the Cloud Desktop image API, independent of the transport."""

from __future__ import annotations

from collections.abc import Collection

from google.rpc import error_details_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_pb2
from yandex.cloud.clouddesktop.v1 import desktop_image_service_pb2 as service_pb2
from yandex.cloud.operation import operation_pb2

from desktop_image_operator_dev.fakecloud import ids, model, operations
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.filters import parse_filter
from desktop_image_operator_dev.fakecloud.model import ComputeImage, Desktop, Folder, Image
from desktop_image_operator_dev.fakecloud.paging import page, parse_order_by
from desktop_image_operator_dev.fakecloud.state import FakeState
from desktop_image_operator_dev.fakecloud.validation import refuse_undocumented_copy_fields, validate

UPDATABLE_FIELDS = ("name", "description", "labels")
QUOTA_COUNT = "vdi.desktopImages.count"
QUOTA_SIZE = "vdi.desktopImages.size"


def sent_mask(request: service_pb2.UpdateDesktopImageRequest) -> list[str]:
    """The paths of the Update's field mask, as sent (empty when it carried none), for the request log."""
    return list(request.update_mask.paths)


class DesktopImageService:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def list(
        self, request: service_pb2.ListDesktopImagesRequest, ctx: CallContext
    ) -> service_pb2.ListDesktopImagesResponse:
        validate(request)
        self._state.folder(request.folder_id)
        conditions = parse_filter(request.filter)
        ordering = parse_order_by(request.order_by)
        # The index List reads from has not caught up with images younger than the lag.
        indexed_before = self._state.clock() - self._state.config.list_lag_seconds
        found = [
            image
            for image in self._state.images.values()
            if image.folder_id == request.folder_id
            and image.created_at <= indexed_before
            and all(c.matches(image.name) for c in conditions)
        ]
        chunk, next_token = page(found, ordering, request.page_size, request.page_token)
        return service_pb2.ListDesktopImagesResponse(
            desktop_images=[image.to_proto() for image in chunk], next_page_token=next_token
        )

    def get(
        self, request: service_pb2.GetDesktopImageRequest, ctx: CallContext
    ) -> desktop_image_pb2.DesktopImage:
        validate(request)
        return self._state.image(request.image_id).to_proto()

    def copy(
        self,
        request: service_pb2.CopyDesktopImageRequest,
        ctx: CallContext,
        *,
        sent: Collection[str] | None = None,
    ) -> operation_pb2.Operation:
        self._check_copy_fields(request, sent)
        validate(request)
        replayed = self._replay(ctx, model.COPY)
        if replayed is not None:
            return replayed
        folder = self._state.folder(request.folder_id)
        source = self._state.compute_image(request.image_id)
        return self._copy(ctx, model.COPY, folder, request, source)

    def copy_from_desktop(
        self,
        request: service_pb2.CopyFromDesktopRequest,
        ctx: CallContext,
        *,
        sent: Collection[str] | None = None,
    ) -> operation_pb2.Operation:
        self._check_copy_fields(request, sent)
        validate(request)
        replayed = self._replay(ctx, model.COPY_FROM_DESKTOP)
        if replayed is not None:
            return replayed
        desktop = self._state.desktop(request.desktop_id)
        folder = self._state.folder(request.folder_id or desktop.folder_id)
        if desktop.status != "STOPPED":
            raise ApiError(
                StatusCode.FAILED_PRECONDITION,
                f"Desktop {desktop.id} is {desktop.status}; stop it before copying an image from it",
            )
        return self._copy(ctx, model.COPY_FROM_DESKTOP, folder, request, desktop)

    def update(
        self, request: service_pb2.UpdateDesktopImageRequest, ctx: CallContext
    ) -> operation_pb2.Operation:
        validate(request)
        replayed = self._replay(ctx, model.UPDATE)
        if replayed is not None:
            return replayed
        image = self._state.image(request.image_id)
        paths = sent_mask(request)
        for path in paths:
            if path not in UPDATABLE_FIELDS:
                raise ApiError(
                    StatusCode.INVALID_ARGUMENT,
                    f"Request validation error: update_mask: {path!r} cannot be updated; "
                    f"updatable fields: {', '.join(UPDATABLE_FIELDS)}",
                )
        # Without a mask (or with an empty one) every updatable field takes the request's value.
        values: dict[str, object] = {
            "name": request.name,
            "description": request.description,
            "labels": dict(request.labels),
        }
        changes = {field: values[field] for field in paths or UPDATABLE_FIELDS}
        operations.require_idle(image)
        if "name" in changes:
            conflict = operations.name_conflict(self._state, image.folder_id, request.name, image.id)
            if conflict is not None:
                raise ApiError(*conflict)
        return self._start(ctx, model.UPDATE, image, self._state.config.operation_seconds, changes)

    def delete(
        self, request: service_pb2.DeleteDesktopImageRequest, ctx: CallContext
    ) -> operation_pb2.Operation:
        validate(request)
        replayed = self._replay(ctx, model.DELETE)
        if replayed is not None:
            return replayed
        image = self._state.image(request.image_id)
        operations.require_idle(image)
        image.status = model.IMAGE_DELETING
        return self._start(ctx, model.DELETE, image, self._state.config.operation_seconds)

    # Helpers

    def _check_copy_fields(
        self,
        request: service_pb2.CopyDesktopImageRequest | service_pb2.CopyFromDesktopRequest,
        sent: Collection[str] | None,
    ) -> None:
        """With strictCopyFields, refuse what the published schema lacks before any value is checked, as
        a server whose request schema forbids extra properties does; nothing is created or remembered
        under the call's idempotency key."""
        if self._state.config.strict_copy_fields:
            refuse_undocumented_copy_fields(request, sent)

    def _replay(self, ctx: CallContext, kind: model.OperationKind) -> operation_pb2.Operation | None:
        """The operation an earlier call with the same Idempotency-Key started, if any."""
        if not ctx.idempotency_key:
            return None
        operation_id = self._state.idempotency.get((ctx.principal, kind.method, ctx.idempotency_key))
        operation = self._state.operations.get(operation_id) if operation_id else None
        return operations.to_proto(operation) if operation is not None else None

    def _start(
        self,
        ctx: CallContext,
        kind: model.OperationKind,
        image: Image,
        duration: float,
        changes: dict[str, object] | None = None,
    ) -> operation_pb2.Operation:
        operation = operations.start(
            self._state, kind, image, ctx.principal, duration, ctx.fail_operation, changes
        )
        ctx.fail_operation_used = ctx.fail_operation is not None
        if ctx.idempotency_key:
            self._state.idempotency[(ctx.principal, kind.method, ctx.idempotency_key)] = operation.id
        return operations.to_proto(operation)

    def _copy(
        self,
        ctx: CallContext,
        kind: model.OperationKind,
        folder: Folder,
        request: service_pb2.CopyDesktopImageRequest | service_pb2.CopyFromDesktopRequest,
        source: ComputeImage | Desktop,
    ) -> operation_pb2.Operation:
        """A new image in `folder`, named as the request says and sized as its source, being copied."""
        state = self._state
        conflict = operations.name_conflict(state, folder.id, request.name)
        if conflict is not None:
            raise ApiError(*conflict)
        storage_size = source.storage_size
        in_cloud = [image for image in state.images.values() if image.cloud_id == folder.cloud_id]
        if len(in_cloud) >= state.config.image_quota:
            raise _quota_exceeded(
                QUOTA_COUNT,
                folder.cloud_id,
                state.config.image_quota,
                f"limit {state.config.image_quota}, used {len(in_cloud)}",
            )
        used_bytes = sum(image.storage_size for image in in_cloud)
        if used_bytes + storage_size > state.config.image_size_quota:
            raise _quota_exceeded(
                QUOTA_SIZE,
                folder.cloud_id,
                state.config.image_size_quota,
                f"limit {state.config.image_size_quota} bytes, used {used_bytes}, requested {storage_size}",
            )
        image = Image(
            id=ids.new_id("e3v"),
            folder_id=folder.id,
            cloud_id=folder.cloud_id,
            name=request.name,
            description=request.description,
            labels=dict(request.labels),
            status=model.IMAGE_CREATING,
            storage_size=storage_size,
            min_disk_size=source.min_disk_size,
            created_at=state.clock(),
        )
        state.images[image.id] = image
        return self._start(ctx, kind, image, state.config.copy_seconds)


def _quota_exceeded(metric: str, cloud_id: str, limit: int, usage: str) -> ApiError:
    """RESOURCE_EXHAUSTED with the QuotaFailure detail that tells it from throttling."""
    violation = error_details_pb2.QuotaFailure.Violation(
        subject=cloud_id,
        description=f"Quota limit {metric} exceeded: {usage}",
        quota_metric=metric,
        quota_value=limit,
    )
    return ApiError(
        StatusCode.RESOURCE_EXHAUSTED,
        f"Quota limit {metric} exceeded in cloud {cloud_id}: {usage}",
        details=(error_details_pb2.QuotaFailure(violations=[violation]),),
    )
