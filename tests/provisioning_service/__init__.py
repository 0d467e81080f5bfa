"""Reference provisioning service for fleet-mtls tests and the demo.

A real HTTPS registry standing in for the cloud side of the upstream installer: an API
listener (server-authenticated TLS) that reserves IDs, registers uploaded self-signed client
certificates and enrols CSRs, and a gate built as the real cloud's: nginx
(``ssl_verify_client optional_no_ca``) in front of a WebSocket endpoint ``/ws`` and a
Socket.IO endpoint, which accept a client certificate only when it is the one currently
registered for its CN. State (its PKI, a SQLite registry, nginx's files) lives in
``--state-dir``. Run ``python3 -m tests.provisioning_service --help`` from the repository root
for the full interface.
"""

from __future__ import annotations

ID_PATTERN = r"[0-9A-F]{8}"
MAX_BODY = 1024 * 1024  # bytes; larger request bodies are refused with 413
SERVER_CERT_KINDS = ("valid", "expired", "wrong-host")
