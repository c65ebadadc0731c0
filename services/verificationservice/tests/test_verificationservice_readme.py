"""The README's Python client runs as written against the service on a swtpm node."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from conftest import Node

from starlock.verificationservice.cli import VerificationService

README = Path(__file__).parents[1] / "README.md"


def test_readme_client(node: Node, serve: Callable[..., VerificationService]) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    service = serve(*node.flags())
    namespace = {
        "validator": node.validator(),
        "GRPC_ENDPOINT": f"127.0.0.1:{service.grpc_port}",
        "HTTP_ENDPOINT": f"127.0.0.1:{service.http_port}",
    }
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["document"]
