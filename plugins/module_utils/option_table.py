# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every option of the mtls_identity module and role, once: type, default, choices, role
variable, aliases, no_log, description.

Everything else is made from this table:

- the module's argument spec, at run time (``argument_spec()``), and the other modules' options
  of the same name (``argument_spec(names)``: one vocabulary, one default). mtls_deregister's
  own options are its vocabulary's only exceptions (``VOCABULARIES``): its ``confirm`` is the
  decommission's confirmation, mtls_identity's the cloud's confirmation of the running agent;
- the role variable each option is read from (``ROLE_VARIABLES``): the action plugin maps the
  role's ``mtls_*`` variables onto the module's options, and messages name them (``names``);
- generated, checked by a unit test: the module's documentation fragment
  ``plugins/doc_fragments/identity.py`` and the role's ``meta/argument_specs.yml``
  (``tests/tools/option_docs.py``).

The API contract's defaults stay in ``api`` (``DEFAULTS``, ``FLAVORS``); the table refers to
them. Descriptions write ``O(:name)`` for another option: the module's docs show ``O(name)``,
the role's ``O(mtls_...)``.
"""
from __future__ import annotations

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, layout, restart

UNSET = object()  # "no default" (None is a default: the option is unset)
# The phases of one run, in order; the role selects them with its tags.
PHASES = ("identity", "config", "verify")
PROTOCOLS = ("websocket", "socketio", "https")
TRUSTS = ("system", "ca_file")
TLS_VERSIONS = ("TLSv1.2", "TLSv1.3")
SUBJECT = (("C", "Country.", "BR"), ("ST", "State.", "SP"), ("L", "Locality.", "SaoPaulo"),
           ("O", "Organization.", "AutonomyLogic"), ("OU", "Organizational unit.", "Development"))


class Option:
    """One option. ``role``: its role variable (default ``mtls_<name>``; None: none).
    ``role_default``: the role's default when it differs from the module's. ``controller``:
    consumed by the action plugin, it never reaches the device. ``entry_points``: the role entry
    points that document it. ``module``: the module whose own option it is (mtls_deregister's
    differ from mtls_identity's of the same name)."""

    def __init__(self, name, kind, description, default=UNSET, choices=None, elements=None, suboptions=None,
                 role=UNSET, role_default=UNSET, aliases=(), no_log=None, required=False, controller=False,
                 entry_points=("main", "audit"), section="", module="mtls_identity"):
        self.name = name
        self.module = module
        self.type = kind
        self.description = [description] if isinstance(description, str) else list(description)
        self.default = default
        self.choices = list(choices) if choices is not None else None
        self.elements = elements
        self.suboptions = suboptions
        self.role = "mtls_" + name if role is UNSET else role
        self._role_default = role_default
        self.aliases = list(aliases)
        self.no_log = no_log
        self.required = required
        self.controller = controller
        self.entry_points = tuple(entry_points) if self.role else ()
        self.section = section

    @property
    def role_default(self):
        """The role's default: its own, the module's, or "" for an unset string ("empty: unset")."""
        if self._role_default is not UNSET:
            return self._role_default
        if self.default is not UNSET and self.default is not None:
            return self.default
        return "" if self.type in ("str", "path", "raw") and not self.required else UNSET

    def spec(self):
        """The argument spec entry."""
        entry = {"type": self.type}
        if self.required:
            entry["required"] = True
        if self.default is not UNSET and self.default is not None:
            entry["default"] = self.default
        if self.choices is not None:
            entry["choices"] = list(self.choices)
        if self.elements:
            entry["elements"] = self.elements
        if self.no_log is not None:  # False says "not a secret" to a name that sounds like one
            entry["no_log"] = self.no_log
        if self.aliases:
            entry["aliases"] = list(self.aliases)
        if self.suboptions:
            entry["options"] = {name: {"type": "str", "default": default} for name, _text, default in self.suboptions}
            entry["apply_defaults"] = True
        return entry


def _options(section, *options):
    for option in options:
        option.section = section
    return options


_FLAVOR = "the API flavor's (O(:api_flavor))"

OPTIONS = (
    _options(
        "provisioning API",
        Option("api_url", "str", "Base URL of the provisioning API, C(https://) only (for example "
               "C(https://api.autonomylogic.com)).", required=True, entry_points=("main", "audit", "decommission")),
        Option("api_flavor", "str", [
            "The deployment the API is, which selects its endpoints and formats (each option below overrides its "
            "part). C(legacy) - the seed's self-signed flow, C(GET /generate-orchestrator-id) and a multipart upload "
            "to C(/upload-orchestrator-certificate). C(enroll) - the upstream installer's current flow, C(GET "
            "/orchestrators/id) and a CSR the API signs at C(/orchestrators/enroll). C(api_service) - the "
            "api-service cloud, a JSON upload to C(/agent/certificate) with a bearer token (O(:headers)), "
            "pre-assigned IDs (set O(:agent_id)) and a heartbeat route (O(:confirm))."],
            default=api.DEFAULTS["api_flavor"], choices=list(api.FLAVORS),
            entry_points=("main", "audit", "decommission")),
        Option("headers", "dict", [
            "Extra request headers, for example C(Authorization) with a bearer token. Never logged; keep "
            "the values in Ansible Vault. The action plugin hands them to the device as a 0600 file "
            "(O(:headers_file)) - never a module argument, which C(ANSIBLE_DEBUG) would print - and only to a "
            "device whose run uses them (mtls_identity: C(headers_withheld)).",
            "Held by the controller, the token also lets it ask the cloud about the running agent (O(:confirm)) "
            "at no device cost; the audit keeps it there (nothing reaches the device)."],
            default={}, no_log=True, role="mtls_api_headers", entry_points=("main", "audit", "decommission")),
        Option("headers_src", "path", [
            "A JSON file on the controller of header names to values (C({\"Authorization\": \"Bearer ...\"})), "
            "read by the action plugin - the token is never a task or module argument. The AWX credential "
            "type of this collection sets it."], role="mtls_api_headers_src", controller=True),
        Option("headers_file", "path", [
            "Path on the device of a JSON object of header names to string values (0600/0400, that you "
            "provision yourself), merged over O(:headers); read without following a symbolic link, never "
            "echoed, so the controller never holds the token."],
            role="mtls_api_headers_file", entry_points=("main", "audit", "decommission")),
        Option("ca_path", "path", "CA bundle on the device that signs the API's server certificate. Default the "
               "system store.", role="mtls_api_ca", entry_points=("main", "audit", "decommission")),
        Option("ca_src", "path", "The API's CA as a file on the controller (read by the action plugin), delivered "
               "to C(<dir>/api-ca.crt).", role="mtls_api_ca_src", controller=True,
               entry_points=("main", "audit", "decommission")),
        Option("ca_content", "str", "The API's CA as PEM text, delivered to C(<dir>/api-ca.crt) (the action plugin "
               "fills it from O(:ca_src)).", role=None),
        Option("validate_certs", "bool", "Verify the API's TLS certificate. C(false) is warned about (a man in the "
               "middle could register its own certificate); only on an isolated test bench.",
               default=api.DEFAULTS["validate_certs"], role="mtls_api_validate_certs",
               entry_points=("main", "audit", "decommission")),
        Option("timeout", "float", "Seconds allowed for each API request; each attempt also has a total deadline.",
               default=api.DEFAULTS["timeout"], role="mtls_api_timeout",
               entry_points=("main", "audit", "decommission")),
        Option("retries", "int", "Retries, with backoff and jitter, after connection errors, timeouts, HTTP 429 and "
               "5xx; never other 4xx.", default=api.DEFAULTS["retries"], role="mtls_api_retries",
               entry_points=("main", "audit", "decommission")),
        Option("id_endpoint", "str", "Endpoint (GET) that reserves a new agent ID. Default " + _FLAVOR + "."),
        Option("upload_endpoint", "str", "Endpoint (POST) that registers a certificate. Default " + _FLAVOR + "."),
        Option("enroll_endpoint", "str", "Endpoint (POST) that issues a certificate for a CSR (O(:enrollment)=csr). "
               "Default " + _FLAVOR + "."),
        Option("upload_format", "str", [
            "C(multipart) - the upstream installer's form (file field O(:certificate_field), field "
            "O(:id_field)); C(json) - C({\"agent_id\", \"certificate\"}) as the cloud's C(/agent/certificate). "
            "Default " + _FLAVOR + "."], choices=list(api.UPLOAD_FORMATS), role_default=""),
        Option("id_field", "str", "Name of the ID field in uploads. Default the format's own - C(id) (multipart), "
               "C(agent_id) (json)."),
        Option("certificate_field", "str", "Name of the certificate field in uploads.",
               default=api.DEFAULTS["certificate_field"]),
    ),
    _options(
        "the identity on the device",
        Option("path", "str", [
            "The identity directory. Default C(~/.mtls) of O(:owner) (its home from the password database), "
            "the directory the stock agent reads. Opened component by component from C(/) without following a "
            "symbolic link."], role="mtls_dir", entry_points=("main", "audit", "decommission")),
        Option("owner", "str", [
            "The agent's user (name or numeric ID), owner of the directory, key and files. Default the user "
            "the module runs as; another user needs root (C(become))."],
            entry_points=("main", "audit", "decommission")),
        Option("group", "str", "Group of the identity files. Default the primary group of O(:owner)."),
        Option("dir_mode", "str", [
            "Mode of the identity directory, as an octal string. Never looser than C(0700) (refused), "
            "and the owner must be able to write it."], default="0700"),
        Option("key_mode", "str", [
            "Mode of the private key, as an octal string; it is created with it (never wider first). "
            "C(0600) or C(0400): anything looser is refused."], default="0600", no_log=False),
        Option("cert_mode", "str", [
            "Mode of the certificate, as an octal string: readable by the owner, writable by nobody else "
            "(C(0644), C(0640), C(0600), C(0444)...)."], default="0644"),
        Option("agent_id", "raw", [
            "A pre-assigned agent ID, a B(string) matching O(:id_pattern): numbers are refused rather than "
            "converted (an INI C(mtls_agent_id=1234e567) is the float C(inf)). Quote it. Default - the API "
            "issues one on the first run."]),
        Option("agent_id_takeover", "bool", [
            "A creation with a pre-assigned O(:agent_id) (or re-keying a device as another ID) first asks the "
            "cloud (O(:confirm)=heartbeat) whether a device holds the ID (its agent active or seen) and is "
            "refused, before any key or upload, when one does. C(true) takes the ID over - for a host that "
            "replaces that device (dead hardware); the report's C(takeover) column records the evidence "
            "overridden."], default=False),
        Option("id_pattern", "str", [
            "Regular expression a valid agent ID matches in full. The default is the provisioning service's "
            "format, 8 upper-case hexadecimal characters, so an ID the API answers in another form (lower "
            "case, say) is refused before any key is made or anything uploaded.",
            "Whatever it says, only plain ASCII names (letters, digits, C(._-)) are ever accepted."],
            default=api.DEFAULTS["id_pattern"], entry_points=("main", "audit", "decommission")),
        Option("lost_identity", "str", [
            "What a device that lost its identity gets when the identity ledger knows its ID - C(restore) "
            "that ID (action C(restored), with a warning), C(new) one (the old one is reported orphaned), or "
            "C(fail).",
            "When the registry answers a restore with its own \"unknown ID\" (it forgot the ID), the device is "
            "enrolled under a new ID in the same run (action C(created), a warning, and the report's C(replaces) "
            "naming the forgotten ID); any other refusal fails naming O(:lost_identity). A pre-assigned "
            "O(:agent_id) is never replaced."], default="restore", choices=["restore", "new", "fail"]),
        Option("ledger_id", "str", [
            "The agent ID the controller's identity ledger holds for this host, set by the action plugin (from "
            "the fact M(autonomy_edge.fleet_mtls.mtls_ledger) leaves, or read from O(:ledger_path)); a host "
            "that fact reports a conflicting ID for is refused.",
            "The device's files can name any ID: a certificate naming another one is neither re-keyed nor "
            "uploaded again unless C(agent_id) names it, nor deleted on the server with C(confirm=all)."],
            role=None),
        Option("state_dir", "str", [
            "The fleet's state on the controller - the report, its history and the identity ledger. Relative - "
            "to the directory C(ansible-playbook) runs in (your project); a path inside an installed collection "
            "is refused."], role_default="fleet-mtls-state", entry_points=("main", "audit", "decommission")),
        Option("ledger_path", "path", [
            "The identity ledger on the controller (host, agent ID, fingerprint, history). Duplicate IDs across "
            "hosts are refused before any change; the action plugin records this host's identity there right "
            "after the module returned, under the ledger's lock (the module never sees it), so the role used "
            "alone keeps it too. A relative path is relative to the directory C(ansible-playbook) runs in; a path "
            "inside an installed collection is refused. Unset - nothing is recorded.",
            "The role's default is C(<mtls_report_dir>/identity-ledger.json), C(<mtls_state_dir>/identity-ledger.json) "
            "without C(mtls_report_dir) (defaults/main.yml)."], role_default=UNSET, controller=True,
            entry_points=("main", "audit", "decommission")),
        Option("enrollment", "str", "C(self_signed) uploads a self-signed certificate; C(csr) has the API sign a "
               "CSR. Default " + _FLAVOR + ".", choices=["self_signed", "csr"], role_default=""),
        Option("key_size", "int", "RSA key size in bits (2048 to 16384).", default=4096),
        Option("subject", "dict", "Subject attributes of the certificate (C, ST, L, O, OU); the CN is always the "
               "agent ID.", suboptions=SUBJECT, role_default={name: default for name, _t, default in SUBJECT}),
        Option("valid_days", "int", "Validity of a new certificate in days.", default=365),
    ),
    _options(
        "rotation",
        Option("rotate", "str", "C(auto) rotates when due or broken; C(always) now (the ID is kept); C(never) only "
               "reports.", default="auto", choices=["auto", "always", "never"]),
        Option("renew_before_days", "int", "Rotate when fewer than this many days are left (plus the host's "
               "jitter).", default=30),
        Option("renew_jitter_days", "int", [
            "Added to O(:renew_before_days) by the action plugin as a stable per-host offset of 0 to this many "
            "days (from the inventory host name), so a fleet provisioned on one day does not rotate on one day."],
            default=0, role_default=14, controller=True),
        Option("backup", "bool", "Keep hard-linked copies (C(<name>.<UTC time>.bak)) of the previous key and "
               "certificate on rotation.", default=False),
        Option("backup_keep", "int", [
            "With O(:backup)=true, after a successful swap the backups beyond the newest this many pairs (key "
            "and certificate of one rotation) are removed, so retired private keys do not pile up in the "
            "directory.",
            "Only regular files named C(client.key.<UTC time>[-<n>].bak) or C(client.crt.<UTC time>[-<n>].bak) "
            "count; each is unlinked through the directory's descriptor (a symbolic link is never followed, nor "
            "removed). C(0) keeps every backup."], default=3),
        # A device clock ahead of the server by more than the notBefore backdate (certs.BACKDATE,
        # 5 minutes) makes certificates the server refuses as "not valid yet"; a little more than
        # that is tolerated (NTP jitter, the Date header's one-second resolution, the round trip).
        Option("max_clock_skew", "int", [
            "Seconds the device clock may differ from the API's C(Date) before the module refuses to mint or "
            "rotate (the certificate would not be valid for the server)."], default=600, role=None),
    ),
    _options(
        "slow devices",
        Option("background_keygen", "bool", [
            "A first, fast pass of the role (C(autonomy_edge.fleet_mtls.mtls_prekey), one round trip, no network "
            "from the device) starts the new key's generation on each device that will need one - not in the "
            "identity ledger yet, due by the renewal date the ledger holds, or O(:rotate=always) - detached and "
            "at the lowest CPU priority, so slow devices make their keys in parallel rather than one batch of "
            "forks after the other; the module call then takes the staged key. A host the ledger expects to "
            "need no key is skipped on the controller, at no round trip. When the identity task refuses a "
            "creation before it wrote anything of the identity (the clock, a takeover, the ID request, the "
            "upload), an identity directory this pass made goes with its key and process; one that was there "
            "before keeps the key for the next run. With pipelining on (C([ssh_connection] pipelining = true)), "
            "that pass runs without AnsiballZ, at about a third of a module's CPU on the device. C(false) - "
            "every key is made inline, holding its fork.",
            "Set C(false) for fleets of fast devices (a key in a second or two): the pass is a second task per "
            "host (about 0.1 s of the controller's CPU and 0.1 s of the device's), which measured more than fast "
            "devices gain from making their keys side by side. Before its first contact nothing tells a fast device "
            "from a slow one, so the default serves small boards. The fleet report's C(keygen_ms) says how long "
            "each device took."],
            default=UNSET, role_default=True, entry_points=("main",)),
        Option("keygen_timeout", "int", [
            "Seconds the identity phase waits for the key a background process is making (the role's first pass, "
            "C(mtls_background_keygen)) when it is not ready yet. A device slower than that fails, its identity "
            "intact, and the process goes on: the next run takes its key."], default=600),
    ),
    _options(
        "device prerequisites",
        Option("install_prerequisites", "bool", [
            "When the device lacks C(cryptography) or C(requests), the action plugin installs "
            "O(:prerequisite_packages) and runs the module again (needs root)."],
            default=False, role_default=True, controller=True),
        Option("prerequisite_packages", "list", "OS packages providing the libraries (Debian names).",
               elements="str", default=[], role_default=["python3-cryptography", "python3-requests"],
               controller=True),
    ),
    _options(
        "the agent",
        Option("server_url", "str", [
            "Where the agent connects (C(https://host[:port])). The stock agent has its server in its code; "
            "give the same one. Default O(:api_url)."]),
        Option("server_ca", "str", "The server's CA as a path on the device, or C(system).", default="system"),
        Option("server_ca_src", "path", "The server's CA as a file on the controller (read by the action plugin), "
               "delivered to C(<dir>/server-ca.crt).", controller=True),
        Option("server_ca_content", "str", "The server's CA as PEM text, delivered to C(<dir>/server-ca.crt).",
               role=None),
        Option("agent_trust", "str", [
            "What the agent trusts - C(system) (OpenSSL's default store, no C(SSL_CERT_FILE)) or C(ca_file) "
            "(the server CA through C(SSL_CERT_FILE) in its environment - C(agent.env), the systemd drop-in, "
            "C(docker run --env-file)). Default C(ca_file) when a server CA is given, else C(system)."],
            choices=list(TRUSTS)),
        Option("tls_min_version", "str", "Minimum TLS version recorded in C(agent-tls.ini).", default="TLSv1.2",
               choices=list(TLS_VERSIONS)),
        Option("agent_config_name", "str", "File name of the settings record in the identity directory (the stock "
               "agent does not read it).", default=layout.AGENT_CONFIG, role=None),
        Option("agent_env_template", "path", [
            "Template of C(agent.env), the agent's environment, rendered on the controller with the task's "
            "variables (found as M(ansible.builtin.template) finds its C(src)). Default the role's "
            "C(templates/agent.env.j2). Its values must be safe for C(docker --env-file) and systemd's "
            "C(EnvironmentFile=); see the role README for the variables it gets."], controller=True),
        Option("agent_ini_template", "path", "Template of the settings record C(agent-tls.ini). Default the role's "
               "C(templates/agent-tls.ini.j2).", controller=True),
        Option("agent_dropin_template", "path", "Template of the systemd drop-in (O(:agent_restart)=systemd). "
               "Default the role's C(templates/fleet-mtls.conf.j2).", controller=True),
        Option("agent_templates", "dict", [
            "The agent's files as the action plugin rendered them from the templates (keys C(env), C(ini), "
            "C(dropin)); the module fills in the identity directory, validates, stages and proves them."],
            role=None),
        Option("agent_restart", "str", [
            "How the agent is restarted after its identity or a file it reads changed - "
            + "; ".join("C(%s) %s" % (method.name, method.doc) for method in restart.METHODS.values()) + ".",
            "A method that restarted nothing (no docker command, no such container) is fine for a new device (its "
            "agent reads the identity when it starts); after a rotation it fails the host (owed to the next run) "
            "unless O(:confirm)=heartbeat, where the cloud's answer decides."],
            default="none", role_default="docker", choices=list(restart.METHODS)),
        Option("agent_container", "str", "The agent's container.", default="orchestrator_agent"),
        Option("agent_container_home", "str", "HOME of the agent inside its container (it reads C(~/.mtls) "
               "there).", default="/root"),
        Option("docker_command", "str", "The docker command (C(podman) is compatible).", default="docker",
               role="mtls_agent_docker_command"),
        Option("agent_service", "str", "The agent's systemd unit.", default="orchestrator-agent"),
        Option("agent_restart_command", "str", "The command of O(:agent_restart)=command (run without a shell).",
               default=""),
    ),
    _options(
        "verification",
        Option("verify", "bool", [
            "Check the connection as the stock agent makes it (its user, HOME, C(~/.mtls), trust) where the "
            "cloud checks the certificate; a new configuration is checked before it is swapped in."], default=True),
        Option("verify_unchanged", "bool", [
            "Also check hosts this run left unchanged. C(false) spares one handshake per unchanged device "
            "(the audit always checks)."], default=True),
        Option("verify_protocol", "str", [
            "C(websocket) - the upgrade of C(/ws); C(socketio) - Engine.IO + CONNECT under C(/socket.io/), as "
            "the stock agent; C(https) - a GET (an HTTP status, no certificate verdict on the real cloud)."],
            default="websocket", choices=list(PROTOCOLS)),
        Option("verify_url", "str", "A full URL to check instead of O(:server_url) and the protocol's path."),
        Option("verify_timeout", "float", "Total seconds of one check (connection, handshake, exchange).",
               default=10),
        Option("verify_status_code", "list", "Statuses that count as success with O(:verify_protocol)=https.",
               elements="int", default=[200]),
        Option("verify_retries", "int", "Retries of a check that was refused or could not connect (a registry may "
               "take a moment).", default=0, role_default=2),
        Option("verify_delay", "float", "Seconds between those retries.", default=3),
    ),
    _options(
        "the cloud's confirmation",
        Option("confirm", "str", [
            "C(heartbeat) - the cloud confirms the running agent. After a swap or a restart the api-service's "
            "heartbeat route is polled until it reports the agent C(active) with an C(uptime) no longer than the "
            "time since then (an agent process started after the new pair was in place, whose certificate the "
            "cloud validated at connect), within O(:confirm_timeout); a host whose agent is not seen back fails "
            "with what the cloud said (C(404 never seen), C(inactive since <time>), C(active but started before "
            "the swap)), whatever the restart method. An unchanged run asks once and reports (report columns "
            "C(cloud), C(agent_uptime_s), C(heartbeat_at)), and restarts an agent the cloud shows on an identity "
            "older than the last swap. The controller asks when it holds the token (O(:headers), "
            "O(:headers_src)), the device when only it does (O(:headers_file)). Check mode asks nothing; the "
            "audit has the controller ask once.",
            "C(none) - the cloud is not asked; a restart method that restarted nothing (no docker command, no "
            "such container) then fails a rotation, unless O(:agent_restart)=none.",
            "Default " + _FLAVOR + " - C(heartbeat) where the API has the heartbeat route (C(api_service)), "
            "C(none) for C(legacy) and C(enroll)."], choices=list(api.CONFIRM_MODES)),
        Option("confirm_timeout", "float", "Seconds to wait for the cloud to see the agent back after a swap or a "
               "restart (its reconnect time).", default=90),
        Option("confirm_endpoint", "str", "Path of the heartbeat route (POST, JSON C({\"agent_id\"}), bearer "
               "token). Default " + _FLAVOR + " (C(/agent/heartbeat) for C(api_service)).",
               entry_points=("main", "audit", "decommission")),
        Option("confirm_stale_minutes", "int", [
            "The audit (C(playbooks/verify.yml)) fails a host whose agent the cloud has not heard from for "
            "longer than this many minutes (or never)."], default=10),
        Option("confirm_by", "str", [
            "Who asks the cloud - C(module), or C(controller) (the action plugin sets it when it holds the "
            "token; the module then hands the question over in its result's C(confirmation))."],
            default="module", choices=["module", "controller"], role=None),
        Option("headers_withheld", "bool", [
            "The controller holds the API's headers and did not send them (the action plugin sets it): the "
            "identity ledger expects this run to need no request of the device (the host is known and not due). "
            "A run that would need one changes nothing and returns C(headers_needed); the action plugin then "
            "sends the headers and runs the module again. An unchanged run so costs one round trip, and the "
            "token reaches only the devices that use it."], default=False, role=None),
        Option("cloud_view", "dict", [
            "The cloud's view of this host's agent ID, asked by the action plugin before the module ran (when "
            "it holds the token and knows the ID)."], role=None),
        Option("audit", "bool", [
            "A read-only audit (the role's C(audit) entry point, in check mode): the controller asks the cloud "
            "once (a read), and silent agents (O(:confirm_stale_minutes)) fail."], default=False, role=None),
    ),
    _options(
        "monitoring and the run",
        Option("metrics_dir", "path", [
            "A node_exporter textfile-collector directory on the device; the run writes C(fleet_mtls.prom) there "
            "(expiry, last success, last rotation), atomically, 0644."]),
        Option("host", "str", "The inventory name of this device (the action plugin sets it), the metrics' "
               "C(host) label.", role=None),
        Option("phases", "list", "The phases to run; the role derives them from the tags of the run.",
               elements="str", choices=list(PHASES), default=list(PHASES), role=None),
        Option("option_names", "str", [
            "C(role) - the task speaks the role's vocabulary: options not given are read from their role "
            "variables (C(mtls_*)), with the role's defaults, and messages name those variables (the role's "
            "task sets it)."], default="module", choices=["module", "role"], role=None),
    ),
    _options(
        "decommissioning (mtls_deregister)",
        Option("confirm", "str", "Must equal the device's agent ID, or C(all) to decommission every targeted "
               "device.", role="mtls_decommission_confirm", role_default="", entry_points=("decommission",),
               module="mtls_deregister"),
        Option("endpoint", "str", [
            "Path template of the deletion endpoint, C({id}) replaced by the agent ID (e.g. "
            "C(/orchestrators/{id})). Required unless O(:local_only)=true."],
            role="mtls_decommission_endpoint", entry_points=("decommission",), module="mtls_deregister"),
        Option("local_only", "bool", [
            "Remove the local identity without deleting the ID on the server. Only when you mean it - the "
            "registry keeps accepting the ID until it is deleted there."], default=False,
            role="mtls_decommission_local_only", entry_points=("decommission",), module="mtls_deregister"),
        Option("cloud_check", "str", [
            "C(heartbeat) - once the server confirmed the deletion, ask the cloud's heartbeat route about the "
            "ID and report an agent still C(active) (its session outlives the deletion: stop it). C(none) - "
            "do not ask.",
            "Default " + _FLAVOR + " - C(heartbeat) where the API has the heartbeat route, else C(none)."],
            choices=list(api.CONFIRM_MODES), role="mtls_confirm", entry_points=("decommission",),
            module="mtls_deregister"),
    ),
)
OPTIONS = tuple(option for section in OPTIONS for option in section)
# What only provisioning acts on: the audit entry point (check mode: the device sends no request,
# nothing is written or restarted) does not document them, and its tasks pin them. The audit
# reads the token only on the controller, which asks the cloud about the agent (confirm).
NOT_AUDITED = ("rotate", "backup", "backup_keep", "install_prerequisites", "prerequisite_packages", "metrics_dir",
               "lost_identity", "agent_restart_command", "verify_unchanged", "headers_file", "ca_path", "retries",
               "id_endpoint", "upload_endpoint", "enroll_endpoint", "upload_format", "id_field", "certificate_field",
               "agent_id_takeover", "confirm_timeout", "keygen_timeout")
for _option in OPTIONS:
    if _option.name in NOT_AUDITED:
        _option.entry_points = tuple(entry for entry in _option.entry_points if entry != "audit")
# mtls_identity's vocabulary, which the other modules share (one name, type and default each).
BY_NAME = {option.name: option for option in OPTIONS if option.module == "mtls_identity"}
# mtls_deregister's: mtls_identity's, but for its own options.
VOCABULARIES = {"mtls_identity": BY_NAME, "mtls_deregister": dict(
    BY_NAME, **{option.name: option for option in OPTIONS if option.module == "mtls_deregister"})}
# The module each role entry point calls (its variables are that module's options).
ENTRY_POINTS = {"main": "mtls_identity", "audit": "mtls_identity", "decommission": "mtls_deregister"}
# Not options of mtls_identity: the role's ledger, its background keygen pass (a task's condition).
NOT_IDENTITY = ("state_dir", "background_keygen")
MODULE_OPTIONS = tuple(option for option in BY_NAME.values() if option.name not in NOT_IDENTITY)
ROLE_VARIABLES = {option.name: option.role for option in BY_NAME.values() if option.role}
# The table's options the other modules take.
DEREGISTER_OPTIONS = ("path", "owner", "confirm", "local_only", "api_url", "endpoint", "id_pattern", "ledger_path",
                      "ledger_id",
                      "headers", "headers_file", "ca_path", "validate_certs", "timeout", "retries", "option_names",
                      "api_flavor", "cloud_check", "confirm_endpoint")
INFO_OPTIONS = ("path", "owner", "id_pattern", "renew_before_days")
CHECK_OPTIONS = ("server_url", "verify_protocol", "verify_url", "path", "owner", "agent_trust", "server_ca",
                 "verify_timeout", "verify_status_code")


def role_variables(vocabulary):
    """{option: role variable} of ``vocabulary`` (a module of VOCABULARIES)."""
    return {name: option.role for name, option in VOCABULARIES[vocabulary].items() if option.role}


def argument_spec(names=None, vocabulary="mtls_identity", **aliases):
    """The argument spec of ``names`` (default: every mtls_identity option) in ``vocabulary``'s
    meaning; ``aliases`` add a module's own old names (``owner=["user"]``)."""
    wanted = MODULE_OPTIONS if names is None else [VOCABULARIES[vocabulary][name] for name in names]
    spec = {option.name: option.spec() for option in wanted}
    for name, extra in aliases.items():
        spec[name]["aliases"] = spec[name].get("aliases", []) + list(extra)
    return spec


def defaults(names=None):
    """The module's defaults (None when unset) of ``names``, as a run's parameters after the
    argument spec applied them (``subject`` with its suboptions)."""
    wanted = MODULE_OPTIONS if names is None else [BY_NAME[name] for name in names]
    values = {}
    for option in wanted:
        if option.suboptions:
            values[option.name] = {name: default for name, _text, default in option.suboptions}
        elif option.default is UNSET:
            values[option.name] = None
        else:
            value = option.default
            values[option.name] = list(value) if isinstance(value, list) else (
                dict(value) if isinstance(value, dict) else value)
    return values


def role_spec(option, entry_point):
    """The role variable's argument spec (without its description) at ``entry_point``: what
    Ansible's role validation and the action plugin check. Paths are strings (a role variable is
    never expanded on the controller); an empty string is allowed where it means "unset";
    decommissioning needs no API URL (local_only)."""
    required = option.required and entry_point != "decommission"
    entry = {"type": "str" if option.type == "path" else option.type}
    if required:
        entry["required"] = True
    default = option.role_default if not option.required else ("" if not required else UNSET)
    if default is not UNSET:
        entry["default"] = default
    if option.choices is not None:
        entry["choices"] = ([""] if default == "" else []) + list(option.choices)
    if option.elements:
        entry["elements"] = option.elements
    return entry


def role_argument_spec(entry_point):
    """{role variable: spec} of ``entry_point`` (main, audit, decommission)."""
    return {option.role: role_spec(option, entry_point) for option in OPTIONS if entry_point in option.entry_points}


def role_to_module(option, value):
    """The module value of a role variable's ``value``: an empty string leaves an option without
    a default of its own unset (the role documents them as "empty - ...")."""
    if value == "" and option.default in (UNSET, None):
        return None
    return value
