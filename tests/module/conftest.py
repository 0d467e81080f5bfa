"""Fixtures of the agent check's tests (defined in tests/fixtures/check_helpers.py): ``pki`` (every
certificate they need, once per session), ``edge`` (a TLS edge server per handler) and ``gate``
(the reference service's gate)."""

from tests.fixtures.check_helpers import edge_fixture, gate_fixture, pki_fixture  # noqa: F401 - registered here
