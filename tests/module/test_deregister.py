"""ProvisioningClient.delete_agent against the real reference service: deleted, already gone
(404/410, not an error), refused (403 with the server's reason), retried (5xx), and paths that
cannot be built from a hostile ID or a bad endpoint."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, ConfigError
from tests.fixtures.identities import client_for

EP = "/orchestrators/{id}"


def test_delete_then_already_gone(svc):
    agent_id = svc.reserve_id()
    client = client_for(svc, headers=svc.auth_headers())
    assert client.delete_agent(agent_id, EP) == (200, True)
    assert agent_id in svc.deleted_ids()
    assert client.delete_agent(agent_id, EP) == (410, False)
    assert client.delete_agent("0000ABCD", EP) == (404, False)


def test_refusal_names_the_status_and_never_the_token(svc):
    agent_id = svc.reserve_id()
    client = client_for(svc, headers={"Authorization": "Bearer wrong-token-123456"})
    with pytest.raises(ApiError) as info:
        client.delete_agent(agent_id, EP)
    assert info.value.status in (401, 403) and "DELETE" in info.value.msg
    assert "wrong-token-123456" not in info.value.msg
    assert agent_id not in svc.deleted_ids()


def test_server_errors_are_retried(svc):
    agent_id = svc.reserve_id()
    svc.inject("/orchestrators/<id>", "status", status=503, count=2)
    client = client_for(svc, headers=svc.auth_headers(), retries=3)
    assert client.delete_agent(agent_id, EP) == (200, True)
    assert [c[2] for c in client.calls] == [503, 503, 200]


@pytest.mark.parametrize(("agent_id", "endpoint"), [
    ("../../etc", EP),
    ("ok-id", "/orchestrators/"),          # no {id}
    ("ok-id", "https://evil.example/{id}"),
    ("ok-id", "orchestrators/{id}"),
    (12345, EP),
])
def test_bad_ids_and_endpoints_are_refused_without_a_request(svc, agent_id, endpoint):
    client = client_for(svc, headers=svc.auth_headers())
    with pytest.raises(ConfigError):
        client.delete_agent(agent_id, endpoint)
    assert client.calls == []
