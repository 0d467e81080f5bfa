"""The collection used the way operators use it: the tarball installed into an empty collections
path, a project of the operator's own (its ansible.cfg, inventory, group_vars and
files/fleet-ca.crt; nothing of this repository), two Debian devices over real SSH (login users
with sudo, the agents' own users), the reference service.

- The playbooks' header commands and the role README's marked examples run as written.
- State has one home, in the project (mtls_state_dir, default ./fleet-mtls-state); the run says
  where; a state path inside the installed collection is refused; the role used alone keeps the
  identity ledger.
- become is where it is needed; a permission error names become and mtls_owner.
- A relative *_src is found in the project, and a missing one is reported with where it was looked for.
"""

from __future__ import annotations

import json
import pwd
import re

import pytest
import yaml
from cryptography import x509

from tests.fixtures import consumer

pytestmark = pytest.mark.integration

REPO = consumer.REPO
# The ID the header commands of playbooks/decommission.yml confirm: edge-sp-01's, pre-assigned.
DOCUMENTED_ID = "07048933"
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in REPO.glob("docs/*.md")), "roles/mtls_identity/README.md"]


@pytest.fixture(scope="module")
def project(tmp_path_factory, collections, devices, module_service):
    svc = module_service
    svc.inject("/generate-orchestrator-id", "fixed_id", value=DOCUMENTED_ID)
    assert svc.reserve_id() == DOCUMENTED_ID  # the registry knows the pre-assigned ID
    settings = {
        "mtls_api_url": svc.api_url,
        "mtls_api_ca_src": "files/fleet-ca.crt",  # relative, in the operator's project
        "mtls_server_url": svc.gate_url,
        "mtls_server_ca_src": "files/fleet-ca.crt",
        "vault_mtls_api_token": svc.token,
        "mtls_api_headers": {"Authorization": "Bearer {{ vault_mtls_api_token }}"},
        "mtls_key_size": 2048,
        "mtls_agent_restart": "none",
        "mtls_install_prerequisites": False,
        "mtls_verify_delay": 0,
        "mtls_decommission_endpoint": "/orchestrators/{id}",
    }
    made = consumer.OperatorProject(tmp_path_factory.mktemp("operator-project"), collections, devices, svc,
                                    {"site_saopaulo": ["edge-sp-01"], "site_campinas": ["edge-cps-01"]}, settings,
                                    host_vars={"edge-sp-01": {"mtls_agent_id": DOCUMENTED_ID}})
    # What belongs to the site in the docs' examples: the real cloud's URL, the agent's user,
    # how the agent runs (no agent, and no docker daemon, on these devices).
    (made.root / "site.yml").write_text(yaml.safe_dump({"mtls_api_url": svc.api_url, "mtls_owner": devices.agents[0],
                                                         "mtls_agent_restart": "none"}))
    made.collection_tree = consumer.tree(made.installed)
    return made


def agent_id(project, host):
    cert = x509.load_pem_x509_certificate((project.devices.identity(host) / "client.crt").read_bytes())
    return cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def header(name):
    return consumer.header_commands(REPO / "playbooks" / f"{name}.yml")


def assert_collection_untouched(project):
    assert consumer.tree(project.installed) == project.collection_tree, "a run wrote into the installed collection"


# --------------------------------------------------------------------------- before anything exists
def test_a_missing_relative_src_says_where_it_looked(project):
    run = project.run("autonomy_edge.fleet_mtls.provision", "--limit", "edge-sp-01",
                      "-e", "mtls_api_ca_src=files/no-such-ca.crt")
    assert run.rc != 0, run.explain()
    text = " ".join(run.output.split())
    assert "mtls_api_ca_src files/no-such-ca.crt: no such file on the controller; looked in" in text, run.explain()
    for place in (project.root / "inventory" / "files" / "no-such-ca.crt", project.root / "files" / "no-such-ca.crt"):
        assert str(place) in text, place
    assert not project.devices.identity("edge-sp-01").exists()


def test_without_become_a_permission_error_names_become_and_mtls_owner(project):
    run = project.run("autonomy_edge.fleet_mtls.provision", "--limit", "edge-sp-01", "-e", "mtls_become=false")
    assert run.rc != 0, run.explain()
    user, agent = project.devices.users[0], project.devices.agents[0]
    text = " ".join(run.output.split())
    assert re.search(r"cannot (open|create) /home/%s[^ ]*: Permission denied \(the module runs as %s, not root: run "
                     r"the play with become: true to write %s's identity, or set mtls_owner to %s\)"
                     % (agent, user, agent, user), text), run.explain()
    assert not project.devices.identity("edge-sp-01").exists()


# --------------------------------------------------------------------------- the playbooks' own commands
def test_the_provision_header_commands_run_as_written(project):
    first, rotate, canary = header("provision")[0]
    run = project.run_command(first)
    assert run.rc == 0, run.explain()
    ids = {host: agent_id(project, host) for host in project.devices.names}
    assert ids["edge-sp-01"] == DOCUMENTED_ID and len(set(ids.values())) == 2
    for host in project.devices.names:
        assert project.service.whoami(project.devices.identity(host) / "client.crt",
                                      project.devices.identity(host) / "client.key")[0] == 200
        assert (project.devices.identity(host) / "client.key").stat().st_uid == \
            pwd.getpwnam(project.devices.agents[project.devices.names.index(host)]).pw_uid

    # The state is in the project, the run says where, the collection is untouched.
    state = project.state
    rows = {r["host"]: r for r in json.loads((state / "provision-report.json").read_text())["hosts"]}
    assert {h: r["action"] for h, r in rows.items()} == {"edge-sp-01": "created", "edge-cps-01": "created"}
    # Each key was made by the first pass's background process, started over SSH with pipelining
    # under become (sudo with Debian's use_pty): the lean pass, which hands its decision over.
    assert {h: r["keygen"] for h, r in rows.items()} == {"edge-sp-01": "background", "edge-cps-01": "background"}
    assert all(r["keygen_ms"] > 0 and r["keygen_wait_ms"] >= 0 for r in rows.values()), rows
    assert re.search(r"this run: %s/history/provision-report-\S+\.json" % re.escape(str(state)), run.output)
    ledger = json.loads((state / "identity-ledger.json").read_text())
    assert {h: e["agent_id"] for h, e in ledger["hosts"].items()} == ids
    assert "identity ledger %s" % (state / "identity-ledger.json") in run.output
    assert "fleet report %s" % (state / "provision-report.json") in run.output
    assert_collection_untouched(project)

    run = project.run_command(rotate)
    assert run.rc == 0, run.explain()
    assert agent_id(project, "edge-sp-01") == DOCUMENTED_ID
    rows = {r["host"]: r for r in json.loads((state / "provision-report.json").read_text())["hosts"]}
    assert (rows["edge-sp-01"]["action"], rows["edge-cps-01"]["action"]) == ("rotated", "created")

    run = project.run_command(canary)
    assert run.rc == 0, run.explain()
    assert run.changed() == 0 and set(run.recap) == set(project.devices.names), run.explain()
    assert_collection_untouched(project)


def test_the_verify_header_command_runs_as_written(project):
    (command,) = header("verify")[0]
    run = project.run_command(command)
    assert run.rc == 0, run.explain()
    rows = json.loads((project.state / "verify-report.json").read_text())["hosts"]
    assert sorted((r["host"], r["action"], r["verify"]) for r in rows) == [
        ("edge-cps-01", "valid", "ok"), ("edge-sp-01", "valid", "ok")]


# --------------------------------------------------------------------------- the docs' examples
def marked_examples():
    return [(doc, example) for doc in DOCS
            for example in consumer.examples((REPO / doc).read_text()).values()]


def test_the_role_readme_marks_its_examples():
    names = {example.name for doc, example in marked_examples() if doc == "roles/mtls_identity/README.md"}
    assert {"role-provision", "role-audit"} <= names


@pytest.mark.parametrize("doc, example", marked_examples(), ids=lambda v: getattr(v, "name", v))
def test_a_marked_example_runs_as_written(project, doc, example):
    """Playbooks and task lists on edge-sp-01 with the site's values (-e @site.yml); shell
    blocks line by line, each ansible-playbook command as written. The role used alone keeps
    its own ledger: each example gets a fresh mtls_state_dir."""
    state = project.root / ("state-" + example.name)
    if example.lang in ("yaml", "yml"):
        run = project.run_snippet(example.name, example.text, "--limit", "edge-sp-01", "-e", "@site.yml",
                                  "-e", "mtls_state_dir=%s" % state)
        assert run.rc == 0, run.explain()
        if example.name == "role-provision":
            ledger = json.loads((state / "identity-ledger.json").read_text())
            assert ledger["hosts"]["edge-sp-01"]["agent_id"] == DOCUMENTED_ID
            assert "identity ledger %s" % (state / "identity-ledger.json") in run.output
    else:
        for line in example.text.splitlines():
            if line.startswith("ansible-playbook"):
                run = project.run_command(line)
                assert run.rc == 0, line + "\n" + run.explain()
    assert_collection_untouched(project)


def test_state_inside_the_installed_collection_is_refused(project):
    inside = project.installed / "fleet-mtls-state"
    run = project.run("autonomy_edge.fleet_mtls.provision", "--limit", "edge-sp-01", "-e", f"mtls_state_dir={inside}")
    assert run.rc != 0, run.explain()
    text = " ".join(run.output.split())
    assert "mtls_ledger_path %s/identity-ledger.json resolves inside the installed collection %s" % (
        inside, project.installed) in text, run.explain()
    assert not inside.exists()
    assert_collection_untouched(project)


MODULE_ALONE = """
- name: Ensure the identity with the module alone, recording it in a ledger
  autonomy_edge.fleet_mtls.mtls_identity:
    api_url: "{{ mtls_api_url }}"
    ca_src: files/fleet-ca.crt
    server_url: "{{ mtls_server_url }}"
    server_ca_src: files/fleet-ca.crt
    owner: "{{ mtls_owner }}"
    key_size: 2048
    ledger_path: "{{ ledger }}"
"""


def test_the_module_alone_records_the_identity_in_its_ledger_or_fails_saying_so(project):
    """A task list (the snippet runner's other form); the action writes the ledger right after
    the module, and a ledger it cannot write fails the host instead of passing silently."""
    ledger = project.root / "module-ledger" / "identity-ledger.json"
    run = project.run_snippet("module-alone", MODULE_ALONE, "--limit", "edge-cps-01", "-e", f"ledger={ledger}")
    assert run.rc == 0, run.explain()
    entry = json.loads(ledger.read_text())["hosts"]["edge-cps-01"]
    assert entry["agent_id"] == agent_id(project, "edge-cps-01")

    not_a_file = project.root / "module-ledger"  # a directory: the ledger cannot be read or written
    run = project.run_snippet("module-alone", MODULE_ALONE, "--limit", "edge-cps-01", "-e", f"ledger={not_a_file}")
    assert run.rc != 0 and "the identity ledger was not updated: %s cannot be read" % not_a_file in run.output, \
        run.explain()


# --------------------------------------------------------------------------- last: it removes the identities
def test_the_decommission_header_commands_run_as_written(project):
    one, site = header("decommission")[0]
    assert DOCUMENTED_ID in one
    run = project.run_command(one)
    assert run.rc == 0, run.explain()
    assert not project.devices.identity("edge-sp-01").exists()
    run = project.run_command(site)
    assert run.rc == 0, run.explain()
    assert not project.devices.identity("edge-cps-01").exists()
    ledger = json.loads((project.state / "identity-ledger.json").read_text())
    assert {h: e["agent_id"] for h, e in ledger["hosts"].items()} == {"edge-sp-01": "", "edge-cps-01": ""}
    assert_collection_untouched(project)
