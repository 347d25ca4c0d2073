"""Storage URIs as KServe's storage initializer reads them, and where their files are in a pod."""

from __future__ import annotations

HF = "hf://"
PVC = "pvc://"


def download_uri(uri: str, revision: str | None) -> str:
    """``uri`` as KServe downloads it: ``hf://owner/model:revision`` pins the revision.

    The engine key is made of ``model.base.revision``; the weights served must be those the engine
    was built from, so the revision reaches the download, not only the key.
    """
    if revision and uri.startswith(HF) and ":" not in uri.removeprefix(HF):
        return f"{uri}:{revision}"
    return uri


def mounted(uri: str, mount: str) -> str:
    """Where ``uri``'s files are in a container whose storageUri entry mounts it at ``mount``.

    KServe mounts a ``pvc://claim/path`` storageUri's whole claim at ``mount`` (the path is not a
    subPath there), so the model is at ``mount/path``; downloaded URIs land at ``mount`` itself.
    """
    if uri.startswith(PVC):
        _, path = pvc_parts(uri)
        return f"{mount}/{path}" if path else mount
    return mount


def pvc_parts(uri: str) -> tuple[str, str]:
    """``pvc://claim/path`` ▶ (claim, path), as KServe's ParsePvcURI splits it."""
    claim, _, path = uri.removeprefix(PVC).partition("/")
    return claim, path.strip("/")
