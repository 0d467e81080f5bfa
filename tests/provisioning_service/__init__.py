"""Reference provisioning service for fleet-mtls tests and the demo.

A real HTTPS registry standing in for the cloud side of the upstream installer:
an API listener (server-authenticated TLS) that reserves IDs, registers uploaded
self-signed client certificates and enrols CSRs, and a gate listener (mutual TLS)
that lets in only currently registered agents.  State (its PKI and a SQLite
registry) lives in ``--state-dir``.  Run ``python3 -m tests.provisioning_service
--help`` from the repository root for the full interface.
"""

from __future__ import annotations

ID_PATTERN = r"[0-9A-F]{8}"
MAX_BODY = 1024 * 1024  # bytes; larger request bodies are refused with 413
SERVER_CERT_KINDS = ("valid", "expired", "wrong-host")
