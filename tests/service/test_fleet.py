"""50 concurrent clients: reserve, upload, get in; then a rotation round."""

from __future__ import annotations

import concurrent.futures
import threading

from tests.fixtures.servicectl import cert_pem, fingerprint, make_self_signed, write_identity

CLIENTS = 50


def test_fifty_concurrent_clients_and_a_rotation_round(service, tmp_path, key_pool):
    # each client rotates to a key it did not have before (pool keys are distinct in a row)
    keys = [key_pool() for _ in range(2 * CLIENTS)]
    assert all(keys[n] is not keys[CLIENTS + n] for n in range(CLIENTS))
    start = threading.Barrier(CLIENTS)

    def enroll(n: int):
        session = service.session()
        start.wait(timeout=60)  # every client hits the service at the same moment
        response = session.get(f"{service.api_url}/generate-orchestrator-id", timeout=60)
        assert response.status_code == 200, response.text
        agent_id = response.json()["data"]["id"]
        cert = make_self_signed(agent_id, keys[n])
        upload = session.post(
            f"{service.api_url}/upload-orchestrator-certificate",
            files={"certificate": ("client.crt", cert_pem(cert))},
            data={"id": agent_id},
            timeout=60,
        )
        assert upload.status_code == 200, upload.text
        assert upload.json()["data"]["id"] == agent_id
        crt, key = write_identity(tmp_path / f"first-{n}", cert, keys[n])
        return agent_id, cert, crt, key

    def rotate(n: int, agent_id: str):
        cert = make_self_signed(agent_id, keys[CLIENTS + n])
        start.wait(timeout=60)
        response = service.upload(agent_id, cert_pem(cert))
        assert response.status_code == 200, response.text
        crt, key = write_identity(tmp_path / f"second-{n}", cert, keys[CLIENTS + n])
        return cert, crt, key

    def gate(crt, key):
        return service.whoami(crt, key, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        first = list(pool.map(enroll, range(CLIENTS)))
        ids = [agent_id for agent_id, *_ in first]
        assert len(set(ids)) == CLIENTS
        assert sorted(service.reserved_ids()) == sorted(ids)
        assert service.registrations() == {a: fingerprint(c) for a, c, _, _ in first}

        answers = list(pool.map(lambda f: gate(f[2], f[3]), first))
        assert answers == [(200, {"id": agent_id}) for agent_id in ids]

        second = list(pool.map(rotate, range(CLIENTS), ids))
        assert service.registrations() == {a: fingerprint(s[0]) for a, s in zip(ids, second, strict=True)}
        for (agent_id, cert, _, _), _new in zip(first, second, strict=True):
            assert service.history(agent_id) == [fingerprint(cert)]

        old_answers = list(pool.map(lambda f: gate(f[2], f[3]), first))
        new_answers = list(pool.map(lambda s: gate(s[1], s[2]), second))
    assert all(answer[0] == 403 for answer in old_answers), old_answers  # TLS passes, the check refuses
    assert new_answers == [(200, {"id": agent_id}) for agent_id in ids]
    assert service.faults()["requests"]["/upload-orchestrator-certificate"] == 2 * CLIENTS
    assert "Traceback" not in service.log_text()
