"""`FakeCloud`: the fake Yandex Cloud serving REST and gRPC on loopback from one state.

Services: Cloud Desktop `DesktopImageService` (all of it) and `DesktopService.Get`, `OperationService`
(Get, Cancel), `IamTokenService.Create` (JWT exchange), and the metadata service's token endpoint (REST).
"""

from __future__ import annotations

import socket
import time
from types import TracebackType

import grpc
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from desktop_image_operator_dev.fakecloud import seeds
from desktop_image_operator_dev.fakecloud.admin import AdminApi
from desktop_image_operator_dev.fakecloud.clock import Clock
from desktop_image_operator_dev.fakecloud.config import FakeCloudConfig
from desktop_image_operator_dev.fakecloud.desktops import DesktopService
from desktop_image_operator_dev.fakecloud.dispatch import Dispatcher
from desktop_image_operator_dev.fakecloud.grpc_service import add_servicers
from desktop_image_operator_dev.fakecloud.images import DesktopImageService
from desktop_image_operator_dev.fakecloud.net import host_for_url, is_loopback
from desktop_image_operator_dev.fakecloud.operations import OperationService
from desktop_image_operator_dev.fakecloud.rest import IAM_TOKENS_PATH, METADATA_TOKEN_PATH, RestApi, not_found
from desktop_image_operator_dev.fakecloud.state import FakeState
from desktop_image_operator_dev.fakecloud.tokens import IamTokenService, MetadataTokenService


class FakeCloud:
    """The fake cloud. Create it, `await start()` (or `async with`), use its URLs, `await stop()`.

    Ports 0 pick free ports; after start `port` and `grpc_port` hold the real ones. The default
    service account and its key exist from construction, so `authorized_key()` works before start.
    """

    # Seeded ids (see `seeds`), here for convenience.
    cloud_id = seeds.CLOUD_ID
    other_cloud_id = seeds.OTHER_CLOUD_ID
    folder_id = seeds.FOLDER_ID
    second_folder_id = seeds.SECOND_FOLDER_ID
    other_cloud_folder_id = seeds.OTHER_CLOUD_FOLDER_ID
    stopped_desktop_id = seeds.STOPPED_DESKTOP_ID
    running_desktop_id = seeds.RUNNING_DESKTOP_ID
    compute_image_id = seeds.COMPUTE_IMAGE_ID
    service_account_id = seeds.SERVICE_ACCOUNT_ID

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grpc_port: int = 0,
        config: FakeCloudConfig | None = None,
        clock: Clock = time.time,
        service_account_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the fake cloud serves on loopback only, not on {host!r}")
        self.host = host
        self.port = port
        self.grpc_port = grpc_port
        self.config = config or FakeCloudConfig()
        self.state = FakeState(self.config, clock)
        account = self.state.iam.create_service_account(seeds.SERVICE_ACCOUNT_NAME, seeds.SERVICE_ACCOUNT_ID)
        self.key_id = self.state.iam.create_key(account.id, service_account_key).id
        self._dispatcher = Dispatcher(self.state)
        self._images = DesktopImageService(self.state)
        self._desktops = DesktopService(self.state)
        self._operations = OperationService(self.state)
        self._iam_tokens = IamTokenService(self.state)
        self._metadata = MetadataTokenService(self.state, account.id)
        self._runner: web.AppRunner | None = None
        self._grpc_server: grpc.aio.Server | None = None

    # Endpoints (meaningful after start)

    @property
    def http_url(self) -> str:
        return f"http://{host_for_url(self.host)}:{self.port}"

    @property
    def cloud_desktop_url(self) -> str:
        """REST base of the Cloud Desktop API (paths start with /cloud-desktop/v1/)."""
        return self.http_url

    @property
    def operation_url(self) -> str:
        """REST base of the Operation API (paths start with /operations/)."""
        return self.http_url

    @property
    def iam_url(self) -> str:
        """REST base of the IAM API (the token exchange is POST {iam_url}/iam/v1/tokens)."""
        return self.http_url

    @property
    def iam_token_url(self) -> str:
        return self.http_url + IAM_TOKENS_PATH

    @property
    def metadata_url(self) -> str:
        """Base of the metadata service (stands in for http://169.254.169.254)."""
        return self.http_url

    @property
    def metadata_token_url(self) -> str:
        return self.http_url + METADATA_TOKEN_PATH

    @property
    def admin_url(self) -> str:
        return self.http_url + "/fake"

    @property
    def grpc_target(self) -> str:
        return f"{host_for_url(self.host)}:{self.grpc_port}"

    def endpoints(self) -> dict[str, str]:
        return {
            "cloudDesktop": self.cloud_desktop_url,
            "operation": self.operation_url,
            "iam": self.iam_url,
            "iamTokens": self.iam_token_url,
            "metadata": self.metadata_url,
            "metadataToken": self.metadata_token_url,
            "admin": self.admin_url,
            "grpc": self.grpc_target,
        }

    # Credentials

    def authorized_key(self, service_account_id: str | None = None) -> dict[str, str]:
        """The `yc iam key create` JSON of a service account's first key (default: the seeded account)."""
        account = self.state.iam.accounts[service_account_id or self.service_account_id]
        return self.state.iam.keys[account.key_ids[0]].to_json()

    def create_service_account(self, name: str = "service-account") -> dict[str, str]:
        """A new service account with a new key; returns that key's authorized key JSON."""
        account = self.state.iam.create_service_account(name)
        return self.state.iam.create_key(account.id).to_json()

    def issue_token(self, service_account_id: str | None = None, ttl_seconds: float | None = None) -> str:
        """A plain IAM token, without the JWT exchange."""
        token, _ = self.state.iam.issue_token(service_account_id or self.service_account_id, ttl_seconds)
        return token

    def reset(self) -> None:
        self.state.reset()

    # Life cycle

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("the fake cloud is already started")
        app = web.Application()
        rest = RestApi(
            self._dispatcher, self._images, self._desktops, self._operations, self._iam_tokens, self._metadata
        )
        admin = AdminApi(self.state, self.endpoints, self.authorized_key)
        app.add_routes(rest.routes())
        app.add_routes(admin.routes())
        app.router.add_route("*", "/{tail:.*}", not_found)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        # A REST call whose client went away is abandoned, as a gRPC one is (see `dispatch`).
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0, handler_cancellation=True
        )
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        self.port = sock.getsockname()[1]
        try:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            add_servicers(
                server, self._dispatcher, self._images, self._desktops, self._operations, self._iam_tokens
            )
            try:
                bound = server.add_insecure_port(f"{host_for_url(self.host)}:{self.grpc_port}")
            except RuntimeError:  # grpc reports a busy port this way
                bound = 0
            if bound == 0:
                raise OSError(f"cannot listen for gRPC on {self.host}:{self.grpc_port}: address in use?")
            await server.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self._grpc_server = server
        self.grpc_port = bound

    async def stop(self) -> None:
        if self._grpc_server is not None:
            await self._grpc_server.stop(grace=0.5)
            self._grpc_server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeCloud:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
