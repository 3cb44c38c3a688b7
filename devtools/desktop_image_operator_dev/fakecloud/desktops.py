"""DesktopService: the desktops images are copied from, as Cloud Desktop shows them (Get only)."""

from __future__ import annotations

from yandex.cloud.clouddesktop.v1 import desktop_pb2, desktop_service_pb2

from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.state import FakeState
from desktop_image_operator_dev.fakecloud.validation import validate


class DesktopService:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def get(self, request: desktop_service_pb2.GetDesktopRequest, ctx: CallContext) -> desktop_pb2.Desktop:
        validate(request)
        return self._state.desktop(request.desktop_id).to_proto()
