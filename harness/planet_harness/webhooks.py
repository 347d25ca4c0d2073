"""An admission webhook the tests serve themselves, to play a policy engine that says no.

A platform's Kyverno, Gatekeeper or in-house webhook refuses objects by their own rules; this one
refuses what it is registered for while :attr:`Webhook.refuse` holds a message, and admits it once
that is cleared. It serves TLS on 127.0.0.1 with a certificate from the cluster's CA and is
registered by URL with that CA as ``caBundle``, as the harness registers KServe's.
"""

from __future__ import annotations

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from planet_harness.controlplane import ControlPlane
from planet_harness.processes import free_port


class Webhook:
    """A validating webhook on 127.0.0.1; ``with`` starts it, registers it, and removes both after."""

    def __init__(
        self,
        cluster: ControlPlane,
        *,
        name: str,
        namespace: str,
        rules: list[dict[str, Any]],
        refuse: str | None,
        code: int = 403,
    ) -> None:
        self.cluster = cluster
        #: The webhook's name (a domain, as the API requires), also the configuration's.
        self.name = name
        #: Only objects in this namespace are sent to it: the rest of the cluster is untouched.
        self.namespace = namespace
        self.rules = rules
        #: The message to refuse with; None admits.
        self.refuse = refuse
        self.code = code
        #: (operation, kind, name) of every request it was asked about, in order.
        self.reviews: list[tuple[str, str, str]] = []
        self.port = free_port()
        self._server: ThreadingHTTPServer | None = None

    def configuration(self) -> dict[str, Any]:
        """The ValidatingWebhookConfiguration that sends the namespace's matching objects here."""
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": self.name,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.port}/validate",
                        "caBundle": self.cluster.ca_bundle(),
                    },
                    "rules": self.rules,
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": self.namespace}},
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 5,
                }
            ],
        }

    def __enter__(self) -> Webhook:
        self._serve()
        self.cluster.apply([self.configuration()])
        return self

    def __exit__(self, *_: object) -> None:
        self.cluster.kubectl(
            "delete", "validatingwebhookconfiguration", self.name, "--ignore-not-found", check=False
        )
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _serve(self) -> None:
        assert self.cluster.ca is not None
        pair = self.cluster.ca.serving(f"webhook-{self.port}", hosts=["127.0.0.1"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(pair.cert), str(pair.key))
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                body = json.dumps(webhook.review(review)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name=self.name, daemon=True).start()
        self._server = server

    def review(self, review: dict[str, Any]) -> dict[str, Any]:
        """The AdmissionReview response: refused with :attr:`refuse`, or allowed."""
        request = review.get("request") or {}
        obj = request.get("object") or request.get("oldObject") or {}
        self.reviews.append(
            (
                str(request.get("operation")),
                str(obj.get("kind")),
                str((obj.get("metadata") or {}).get("name")),
            )
        )
        response: dict[str, Any] = {"uid": request.get("uid"), "allowed": self.refuse is None}
        if self.refuse is not None:
            response["status"] = {"code": self.code, "reason": "Forbidden", "message": self.refuse}
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
