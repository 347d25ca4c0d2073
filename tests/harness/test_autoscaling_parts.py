"""The autoscaling stack's parts that need no cluster: the gateway's CONNECT tunnels, the Prometheus
config (checked by the real promtool) and the KEDA install derived from KEDA's own config."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from planet_harness import components, gateway, keda, monitoring, stack
from planet_harness.processes import Process, free_port


class _Snapshot:
    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.asked: list[tuple[str, str, int | None]] = []

    def endpoint(self, namespace: str, service: str, port: int | None) -> tuple[str, int]:
        self.asked.append((namespace, service, port))
        if service != "keda-operator":
            raise LookupError(f"no Service {namespace}/{service}")
        return self.address


class _Gateway:
    def __init__(self, address: tuple[str, int]) -> None:
        self.snapshot = _Snapshot(address)
        self.synced = 0

    async def sync(self) -> None:
        self.synced += 1


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(1024):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


async def _connect(port: int, line: str) -> tuple[bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{line}\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
    return head, reader, writer


async def test_connect_tunnels_to_a_service_endpoint_and_refuses_anything_else() -> None:
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    target = echo.sockets[0].getsockname()[:2]
    fake = _Gateway(target)
    tunnels = gateway.Tunnels(fake)  # type: ignore[arg-type]
    server = await asyncio.start_server(tunnels.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        head, reader, writer = await _connect(
            port, "CONNECT keda-operator.keda.svc.cluster.local:9666 HTTP/1.1"
        )
        assert head.startswith(b"HTTP/1.1 200")
        writer.write(b"grpc bytes")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(10), timeout=5) == b"GRPC BYTES"
        writer.close()
        assert fake.snapshot.asked[0] == ("keda", "keda-operator", 9666)

        # Not a Service name: refused, nothing dialled.
        head, _, writer = await _connect(port, "CONNECT example.com:443 HTTP/1.1")
        assert head.startswith(b"HTTP/1.1 400")
        writer.close()
        # A Service with no endpoint: the gateway re-reads the cluster once, then says 503.
        head, _, writer = await _connect(port, "CONNECT nothing.keda.svc:9666 HTTP/1.1")
        assert head.startswith(b"HTTP/1.1 503") and fake.synced == 1
        writer.close()
    finally:
        server.close()
        echo.close()


def _built(name: str) -> Path | None:
    try:
        return components.binary(name)
    except (FileNotFoundError, OSError):
        return None


@pytest.mark.skipif(_built("prometheus") is None, reason="Prometheus not built yet (`make components`)")
def test_prometheus_loads_the_config_and_keeps_only_annotated_pods(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"server": "https://127.0.0.1:1"}
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    config = monitoring.config(kubeconfig=kubeconfig, scrape_seconds=2)
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    binary = _built("prometheus")
    assert binary is not None
    server = Process(
        "prometheus",
        [str(binary), f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        log=tmp_path / "prometheus.log",
    )  # fmt: skip
    server.start()
    try:
        # A config this Prometheus refused (no Kubernetes discovery, a bad relabel) ends it at start.
        server.wait_until(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2).status == 200,
            timeout=60,
            what="/-/ready",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status/config", timeout=5) as reply:
            loaded = yaml.safe_load(json.loads(reply.read())["data"]["yaml"])
        assert loaded["scrape_configs"][0]["kubernetes_sd_configs"][0]["role"] == "pod"
    finally:
        server.stop()
    relabel = config["scrape_configs"][0]["relabel_configs"]
    assert relabel[0] == {
        "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
        "action": "keep",
        "regex": "true",
    }
    # The labels the operator's KEDA query selects on besides the predictor's own.
    assert {r.get("target_label") for r in relabel} >= {"namespace", "pod", "__address__", "__metrics_path__"}


def test_bad_autoscaling_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        stack.Autoscaling(scrape_seconds=0)
    with pytest.raises(ValueError, match=r"0\.\.3600"):
        stack.Autoscaling(scale_down_stabilization_seconds=-1)


@pytest.mark.skipif(shutil.which("go") is None, reason="reads KEDA's config from the pinned Go module")
def test_keda_install_is_kedas_own_config_with_cluster_certificates() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": keda.CERT_SECRET, "namespace": "keda"},
    }
    objects = keda.manifests(ca_bundle=base64.b64encode(b"CA").decode(), cert_secret=secret)
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert kinds[:2] == [("Namespace", "keda"), ("Secret", keda.CERT_SECRET)]
    assert ("APIService", keda.API_SERVICE) in kinds
    assert ("ClusterRoleBinding", "keda-hpa-controller-external-metrics") in kinds
    by_name: dict[str, Any] = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert set(by_name) == {"keda-operator", "keda-metrics-apiserver"}
    for deployment in by_name.values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        text = yaml.safe_dump(container)
        assert "/certs" not in text.replace(keda.CERT_DIR, "")
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {keda.CERT_DIR}
    operator_args = by_name["keda-operator"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        "--enable-cert-rotation=false" in operator_args and "--enable-cert-rotation=true" not in operator_args
    )
    service = next(o for o in objects if o["kind"] == "APIService")
    assert service["spec"]["caBundle"] == base64.b64encode(b"CA").decode()
    assert service["spec"]["service"] == {"name": "keda-metrics-apiserver", "namespace": "keda"}


async def test_a_refused_connection_is_retried_on_another_endpoint() -> None:
    from aiohttp import web

    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"body": (await request.read()).decode()})

    app = web.Application()
    app.router.add_post("/v1/models/m:predict", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    live = runner.addresses[0][1]
    closed = free_port()  # nothing listens: a pod that has just stopped accepting

    def snapshot(port: int) -> gateway.Snapshot:
        found = gateway.Snapshot()
        found.services[("ns", "svc")] = {"spec": {"ports": [{"name": "http", "port": 80}]}}
        found.slices[("ns", "svc")] = [
            {"ports": [{"name": "http", "port": port}], "endpoints": [{"addresses": ["127.0.0.1"]}]}
        ]
        return found

    proxy = gateway.Gateway(None, addresses=[])  # type: ignore[arg-type]
    proxy.snapshot = snapshot(closed)
    synced: list[int] = []

    async def sync() -> None:  # the endpoint's removal reaches the snapshot
        synced.append(1)
        proxy.snapshot = snapshot(live)

    proxy.sync = sync  # type: ignore[method-assign]
    server = web.Server(proxy.handle)
    front = web.ServerRunner(server)
    await front.setup()
    await web.TCPSite(front, "127.0.0.1", 0).start()
    port = front.addresses[0][1]
    import aiohttp

    async with aiohttp.ClientSession() as session:
        proxy.session = session
        async with session.post(
            "http://svc.ns.svc.cluster.local/v1/models/m:predict",
            data=b"once",
            proxy=f"http://127.0.0.1:{port}",
        ) as reply:
            assert reply.status == 200
            assert await reply.json() == {"body": "once"}
    assert synced == [1]
    await front.cleanup()
    await runner.cleanup()
