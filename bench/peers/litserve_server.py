"""LitServe with its own dynamic batching (``max_batch_size``, ``batch_timeout`` on the LitAPI).

    python bench/peers/litserve_server.py MODEL_DIR PORT MAX_BATCH_SIZE BATCH_TIMEOUT_S

Configured as LitServe's docs recommend for a batched model on CPU: the batching knobs on the
``LitAPI`` (0.2.x deprecates them on ``LitServer``), one worker for the one device
(``workers_per_device=1``), one API server, ``accelerator="cpu"``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import litserve as ls

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # bench/peers is not a package


class PlanetAPI(ls.LitAPI):  # type: ignore[misc]  # litserve ships no type hints
    """Request body in, base64 PNG out; ``predict`` sees a list of bodies when batching."""

    def setup(self, device: str) -> None:
        self.pipe = common.load(sys.argv[1])

    # Unannotated on purpose: LitServe builds the route's parameters from this signature, and an
    # annotation that is not a pydantic model turns the body into a query parameter.
    def decode_request(self, request):  # type: ignore[no-untyped-def]
        return request

    def batch(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return inputs

    def predict(self, bodies: list[dict[str, Any]]) -> list[str]:
        return common.generate(self.pipe, bodies)

    def unbatch(self, output: list[str]) -> list[str]:
        return output

    def encode_response(self, image: str) -> dict[str, str]:
        return {"image": image}


if __name__ == "__main__":
    api = PlanetAPI(max_batch_size=int(sys.argv[3]), batch_timeout=float(sys.argv[4]))
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1, timeout=600)
    server.run(
        host="127.0.0.1",
        port=int(sys.argv[2]),
        num_api_servers=1,
        generate_client_file=False,
        log_level="warning",
    )
