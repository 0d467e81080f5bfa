"""mtls_identity through Ansible against the reference service: one option selects the API a real
deployment is (api_flavor), the modes are options the module enforces and never loosens for
the key, and check mode shows each agent file it would change."""

from __future__ import annotations

import stat

import pytest

from tests.fixtures.ansible_runner import run_task

pytestmark = pytest.mark.integration


def base_args(svc, path, **kw):
    args = {"api_url": svc.api_url, "ca_path": str(svc.ca_path), "path": str(path), "key_size": 2048,
            "server_url": svc.gate_url, "server_ca": str(svc.ca_path)}
    args.update(kw)
    return args


def api_requests(svc):
    return {endpoint: n for endpoint, n in svc.faults()["requests"].items() if n and not endpoint.startswith(
        ("/ws", "/socket.io", "/whoami"))}


def new_requests(svc, before):
    now = api_requests(svc)
    return {endpoint: n - before.get(endpoint, 0) for endpoint, n in now.items() if n != before.get(endpoint, 0)}


def test_the_enroll_flavor_is_the_upstream_installers_current_flow(svc, tmp_path):
    ident = tmp_path / "enroll"
    run = run_task(tmp_path, "mtls_identity", base_args(svc, ident, api_flavor="enroll"))
    assert not run.failed, run.result.get("msg")
    assert run.result["action"] == "created"
    # GET /orchestrators/id (its bare {"data"} answer), a CSR to /orchestrators/enroll: nothing else.
    assert set(api_requests(svc)) == {"/orchestrators/id", "/orchestrators/enroll"}, api_requests(svc)
    assert svc.whoami(ident / "client.crt", ident / "client.key") == (200, {"id": run.result["agent_id"]})


def test_the_api_service_flavor_uploads_json_with_a_bearer_token_for_a_preassigned_id(svc, tmp_path):
    ident = tmp_path / "cloud"
    agent_id = svc.reserve_id()
    args = base_args(svc, ident, api_flavor="api_service", agent_id=agent_id,
                     headers={"Authorization": "Bearer " + svc.token})
    reserved = api_requests(svc)  # the reservation stands for the ID the cloud pre-assigned
    run = run_task(tmp_path, "mtls_identity", args)
    assert not run.failed, run.result.get("msg")
    # The heartbeat route: is the pre-assigned ID a live device's (no takeover), then the cloud's
    # view of the new agent (none started here: `unseen`, asked once, not waited for).
    assert new_requests(svc, reserved) == {"/agent/certificate": 1, "/agent/heartbeat": 2}
    assert run.result["status"]["cloud"] == "unseen"
    assert svc.registered_pem(agent_id) == (ident / "client.crt").read_text()
    # It issues no IDs: without one, the run says so and asks nothing of the server.
    fresh = run_task(tmp_path, "mtls_identity", dict(args, path=str(tmp_path / "fresh"), agent_id=""))
    assert fresh.failed and "issues no IDs" in fresh.result["msg"] and "agent_id" in fresh.result["msg"]
    assert new_requests(svc, reserved) == {"/agent/certificate": 1, "/agent/heartbeat": 2}


def test_an_endpoint_option_overrides_its_flavors(svc, tmp_path):
    run = run_task(tmp_path, "mtls_identity", base_args(svc, tmp_path / "m", api_flavor="enroll",
                                                         id_endpoint="/generate-orchestrator-id"))
    assert not run.failed, run.result.get("msg")
    assert set(api_requests(svc)) == {"/generate-orchestrator-id", "/orchestrators/enroll"}, api_requests(svc)


def test_stricter_modes_are_enforced_and_a_looser_key_mode_is_refused(svc, tmp_path):
    ident = tmp_path / "modes"
    run = run_task(tmp_path, "mtls_identity", base_args(svc, ident, key_mode="0400", cert_mode="0640"))
    assert not run.failed, run.result.get("msg")
    assert stat.S_IMODE((ident / "client.key").stat().st_mode) == 0o400
    assert stat.S_IMODE((ident / "client.crt").stat().st_mode) == 0o640
    assert run.result["files"]["key"]["mode"] == "0400"
    again = run_task(tmp_path, "mtls_identity", base_args(svc, ident, key_mode="0400", cert_mode="0640"))
    assert again.result["action"] == "unchanged" and not again.result["changed"]
    before = {p.name: p.read_bytes() for p in ident.iterdir()}
    loose = run_task(tmp_path, "mtls_identity", base_args(svc, ident, key_mode="0640"))
    assert loose.failed and "key_mode 0640 is refused" in loose.result["msg"]
    assert loose.result["status"]["phase"] == "preflight"
    assert {p.name: p.read_bytes() for p in ident.iterdir()} == before
    assert stat.S_IMODE((ident / "client.key").stat().st_mode) == 0o400


def test_check_mode_shows_each_agent_file_it_would_change(svc, tmp_path):
    ident = tmp_path / "diff"
    first = base_args(svc, ident, verify=False)
    del first["server_ca"]  # the agent trusts the system store
    assert not run_task(tmp_path, "mtls_identity", first).failed
    # Now give the agent the CA through SSL_CERT_FILE: agent.env and the record would change.
    check = run_task(tmp_path, "mtls_identity", base_args(svc, ident, verify=False), check=True, diff=True)
    assert not check.failed, check.result.get("msg")
    assert check.result["changed"] and check.result["status"]["config"] == "changed"
    diffs = check.result["diff"]
    assert diffs[0]["before_header"] == "identity (metadata only)" and diffs[0]["before"] == diffs[0]["after"]
    files = {d["after_header"]: d for d in diffs[1:]}
    assert set(files) == {str(ident / "agent.env"), str(ident / "agent-tls.ini")}
    line = "SSL_CERT_FILE=%s\n" % svc.ca_path
    assert line not in files[str(ident / "agent.env")]["before"]
    assert files[str(ident / "agent.env")]["after"].endswith(line)
    assert "before: %s" % (ident / "agent.env") in check.stdout  # what --diff prints
    assert "PRIVATE KEY" not in check.stdout + check.stderr
