"""The two ways a client gets an IAM token: the IAM token service (JWT exchange) and the metadata service."""

from __future__ import annotations

from yandex.cloud.iam.v1 import iam_token_service_pb2

from desktop_image_operator_dev.fakecloud.clock import to_timestamp
from desktop_image_operator_dev.fakecloud.codes import ApiError, StatusCode
from desktop_image_operator_dev.fakecloud.context import CallContext
from desktop_image_operator_dev.fakecloud.state import FakeState
from desktop_image_operator_dev.fakecloud.validation import validate


class IamTokenService:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def create(
        self, request: iam_token_service_pb2.CreateIamTokenRequest, ctx: CallContext
    ) -> iam_token_service_pb2.CreateIamTokenResponse:
        validate(request)
        if request.yandex_passport_oauth_token:
            raise ApiError(
                StatusCode.UNAUTHENTICATED,
                "Yandex ID OAuth tokens are not accepted here; exchange a service account JWT",
            )
        token, issued = self._state.iam.exchange_jwt(request.jwt)
        ctx.principal = issued.service_account_id
        return iam_token_service_pb2.CreateIamTokenResponse(
            iam_token=token, expires_at=to_timestamp(issued.expires_at)
        )


class MetadataTokenService:
    """`GET /computeMetadata/v1/instance/service-accounts/default/token`, as a VM or a node sees it."""

    def __init__(self, state: FakeState, service_account_id: str) -> None:
        self._state = state
        self.service_account_id = service_account_id

    def token(self, metadata_flavor: str | None, ctx: CallContext) -> dict[str, object]:
        if metadata_flavor != "Google":
            raise ApiError(StatusCode.PERMISSION_DENIED, "Missing required header 'Metadata-Flavor: Google'")
        token, issued = self._state.iam.issue_token(self.service_account_id)
        ctx.principal = issued.service_account_id
        expires_in = max(int(issued.expires_at - self._state.clock()), 0)
        return {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
