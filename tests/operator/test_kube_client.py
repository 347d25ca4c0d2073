"""kube.client credentials: the in-cluster token as the API server expects it, rotated, and re-read on 401."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from planet_operator.kube import client as kube
from planet_operator.kube import resources


@dataclasses.dataclass
class FakeAPI:
    """An API server that demands a bearer token from ``accepted``; records what it was sent."""

    url: str = ""
    port: int = 0
    accepted: set[str] = dataclasses.field(default_factory=set)
    #: (method, Authorization header, body) of every request.
    seen: list[tuple[str, str | None, str]] = dataclasses.field(default_factory=list)

    def headers(self) -> list[str | None]:
        return [auth for _, auth, _ in self.seen]


@pytest.fixture
async def api() -> AsyncIterator[FakeAPI]:
    fake = FakeAPI()

    async def handle(request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization")
        fake.seen.append((request.method, auth, await request.text()))
        if auth not in {f"Bearer {token}" for token in fake.accepted}:
            status = {"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}
            return web.json_response({**status, "message": "Unauthorized"}, status=401)
        return web.json_response({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{fake.port}"
    yield fake
    await runner.cleanup()


@dataclasses.dataclass
class Pod:
    """A ServiceAccount volume as the kubelet mounts it (token, ca.crt) and the service env."""

    token_file: Path
    ca_file: Path

    def rotate(self, token: str) -> None:
        self.token_file.write_text(token)


@pytest.fixture
def pod(tmp_path: Path, api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> Pod:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
    mounted = Pod(token_file=tmp_path / "token", ca_file=tmp_path / "ca.crt")
    mounted.rotate("token-one")
    mounted.ca_file.write_text("-----BEGIN CERTIFICATE-----\nnot used over http\n-----END CERTIFICATE-----\n")
    return mounted


def in_cluster(pod: Pod, api: FakeAPI) -> kube.Connection:
    """What load_connection() reads in a pod, pointed at the plain-http fake (TLS is not the point)."""
    connection = kube.load_connection(token_file=str(pod.token_file), ca_file=str(pod.ca_file))
    assert connection.server == f"https://127.0.0.1:{api.port}"
    return dataclasses.replace(connection, server=api.url)


async def test_in_cluster_token_is_sent_as_one_bearer(pod: Pod, api: FakeAPI) -> None:
    connection = kube.load_connection(token_file=str(pod.token_file), ca_file=str(pod.ca_file))
    # The kubernetes client's in-cluster loader stores "bearer <token>", lowercase.
    assert connection.token == "token-one"
    assert connection.token_file == str(pod.token_file)
    assert connection.ca_file == str(pod.ca_file)
    api.accepted = {"token-one"}
    client = kube.Client(dataclasses.replace(connection, server=api.url))
    try:
        assert (await client.get(resources.CONFIG_MAPS, "default", "x"))["metadata"]["name"] == "x"
        await client.create(resources.CONFIG_MAPS, "default", {"metadata": {"name": "y"}})
    finally:
        await client.close()
    assert api.headers() == ["Bearer token-one", "Bearer token-one"]


async def test_kubeconfig_token_is_not_re_read_from_a_file(
    tmp_path: Path, api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: c\n  cluster:\n    server: {api.url}\n"
        "users:\n- name: u\n  user:\n    token: from-kubeconfig\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
    )
    # The kubernetes client reads $KUBECONFIG when it is imported, as its default path.
    from kubernetes.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
    connection = kube.load_connection(token_file=str(tmp_path / "missing"))
    assert (connection.server, connection.token, connection.token_file) == (api.url, "from-kubeconfig", None)
    api.accepted = {"from-kubeconfig"}
    client = kube.Client(connection)
    try:
        await client.get(resources.CONFIG_MAPS, "default", "x")
    finally:
        await client.close()
    assert api.headers() == ["Bearer from-kubeconfig"]


async def test_rotated_token_file_is_picked_up(pod: Pod, api: FakeAPI) -> None:
    api.accepted = {"token-one", "token-two"}
    every_time = kube.Client(in_cluster(pod, api), token_reread_seconds=0)
    once_a_minute = kube.Client(in_cluster(pod, api))
    try:
        pod.rotate("token-two")
        await every_time.get(resources.CONFIG_MAPS, "default", "x")
        # Within the minute the file is not read again: the old token is still valid.
        await once_a_minute.get(resources.CONFIG_MAPS, "default", "x")
    finally:
        await every_time.close()
        await once_a_minute.close()
    assert api.headers() == ["Bearer token-two", "Bearer token-one"]


async def test_401_re_reads_the_token_file_and_retries_once(pod: Pod, api: FakeAPI) -> None:
    client = kube.Client(in_cluster(pod, api))
    try:
        # The old token expired and the kubelet wrote a new one since the last read.
        api.accepted = {"token-two"}
        pod.rotate("token-two")
        created = await client.create(resources.CONFIG_MAPS, "default", {"metadata": {"name": "y"}})
        assert created["kind"] == "ConfigMap"
        # The new token is kept: the next request goes with it first time.
        await client.get(resources.CONFIG_MAPS, "default", "x")
    finally:
        await client.close()
    assert api.headers() == ["Bearer token-one", "Bearer token-two", "Bearer token-two"]
    assert [method for method, _, _ in api.seen] == ["POST", "POST", "GET"]
    # The retried POST carries its body again.
    assert api.seen[0][2] == api.seen[1][2] != ""


async def test_still_401_after_re_reading_is_an_api_error(pod: Pod, api: FakeAPI) -> None:
    client = kube.Client(in_cluster(pod, api))
    try:
        api.accepted = {"token-three"}
        pod.rotate("token-two")
        with pytest.raises(kube.APIError) as raised:
            await client.get(resources.CONFIG_MAPS, "default", "x")
        assert raised.value.status == 401 and raised.value.reason == "Unauthorized"
        # Nothing new in the file: the same credentials are not sent again.
        with pytest.raises(kube.APIError):
            await client.get(resources.CONFIG_MAPS, "default", "x")
    finally:
        await client.close()
    assert api.headers() == ["Bearer token-one", "Bearer token-two", "Bearer token-two"]


async def test_401_without_a_token_file_reloads_the_connection(api: FakeAPI) -> None:
    reloads: list[str] = []

    def reload() -> kube.Connection:
        reloads.append("kubeconfig")
        return kube.Connection(server=api.url, token="refreshed")

    api.accepted = {"refreshed"}
    client = kube.Client(kube.Connection(server=api.url, token="expired"), reload=reload)
    try:
        await client.get(resources.CONFIG_MAPS, "default", "x")
        await client.get(resources.CONFIG_MAPS, "default", "x")
    finally:
        await client.close()
    assert reloads == ["kubeconfig"]
    assert api.headers() == ["Bearer expired", "Bearer refreshed", "Bearer refreshed"]


@pytest.mark.parametrize("auth", ["bearer abc", "Bearer abc", "BEARER  abc ", "abc"])
def test_the_bearer_scheme_is_case_insensitive(auth: str) -> None:
    assert kube._bearer(auth) == "abc"
