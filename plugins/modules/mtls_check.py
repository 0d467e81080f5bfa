#!/usr/bin/python
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_check
short_description: Prove that the stock agent connects with the device's mTLS identity
version_added: "1.0.0"
description:
  - Checks what the stock agent will see when it connects, with the agent's own files, user,
    environment and TLS code. The agent reads no configuration file (C(agent-tls.ini) is a
    record for people and tools, and this module ignores it too). It reads C(~/.mtls/client.crt)
    and C(~/.mtls/client.key) of the user it runs as, builds its context with
    C(ssl.create_default_context) for server authentication, minimum TLS 1.2, hostname checking
    and C(CERT_REQUIRED), and trusts OpenSSL's default store unless C(SSL_CERT_FILE) in its
    environment names a CA file.
  - The check builds that very context in a child process whose environment is the agent's
    (the agent's C(HOME); C(SSL_CERT_FILE=server_ca) with O(agent_trust=ca_file); neither
    C(SSL_CERT_FILE) nor C(SSL_CERT_DIR) with O(agent_trust=system)). When the module runs as root
    and O(owner) is given, the child becomes that user before it reads any file, so it reads
    exactly what the agent can read.
  - It then speaks to the server where the cloud checks the client certificate.
    C(websocket) (default) - an RFC 6455 upgrade of C(/ws), accepted only on C(101) with a
    valid C(Sec-WebSocket-Accept), then a clean close. C(socketio) - what the stock agent
    does, the Engine.IO v4 handshake on C(/socket.io/?EIO=4&transport=websocket) and a
    Socket.IO CONNECT, accepted on C(40{sid}), refused on C(44). C(https) - one C(GET),
    successful when the status is in O(verify_status_code); it proves the TLS handshake only, since
    the cloud answers every plain route C(403) without its API key whatever certificate is
    presented.
  - One total deadline (O(verify_timeout)) bounds everything - connection, handshake, upgrade and
    every read; a server trickling bytes cannot hold the check past it.
  - A failure is classified in RV(failure) with a message saying what to fix -
    C(config) (an option that cannot work, an C(SSL_CERT_FILE) the agent cannot read),
    C(client_credentials) (C(client.crt)/C(client.key) unreadable by the agent's user, or not
    a pair), C(client_cert_expired), C(clock) (the device clock is off from the server's
    C(Date) or is the likely cause), C(connection), C(timeout), C(tls_protocol),
    C(untrusted_server) (the agent's trust rejects the server; the message says how to give
    it the server's CA), C(hostname_mismatch), C(server_cert_expired), C(refused) (only when
    the step that checks certificates refused - HTTP 401/403 on the WebSocket upgrade, C(44)
    on Socket.IO CONNECT, nginx C(400 The SSL certificate error), a certificate TLS alert),
    C(http_status) (an HTTP status that is no certificate verdict, such as a C(403) on a
    plain C(GET), or a C(5xx)) and C(protocol) (no such endpoint - a C(404) or C(200) to the
    upgrade - a wrong accept key, no Engine.IO answer).
  - Read-only. Standard library only (C(ssl), C(socket)), so it runs where C(cryptography) is
    missing; Python 3.9 or later on the device. Never reads, returns or logs key material.
author:
  - fleet-mtls contributors (@autonomy-edge)
options:
  server_url:
    description:
      - Where the agent connects, C(https://host[:port]) (no path).
      - The server certificate must be valid for this host, as the agent checks it.
    type: str
    required: true
  verify_protocol:
    description:
      - The exchange to prove. C(websocket) and C(socketio) reach the endpoints where the cloud
        checks the client certificate; C(https) proves only the TLS handshake and a status.
      - The name M(autonomy_edge.fleet_mtls.mtls_identity) gives it; O(protocol) is its old name.
    type: str
    choices: [websocket, socketio, https]
    default: websocket
    aliases: [protocol]
  verify_url:
    description:
      - Full C(https://) URL to check instead of O(server_url) plus the protocol's default path
        (C(/ws), C(/socket.io/), C(/)). Its host and port must be where the agent connects.
    type: str
    aliases: [url]
  path:
    description:
      - The identity directory the agent reads as C(~/.mtls). Default C(~/.mtls); a leading C(~) is the
        home of O(owner) when given, else of the user the module runs as (the password database).
    type: str
  owner:
    description:
      - The user the agent runs as. When the module runs as root, the check runs as this user
        (its groups, uid and C(HOME)); otherwise the module must run as this user.
      - Omitted - the check runs as the user the module runs as.
      - O(user) is its old name.
    type: str
    aliases: [user]
  agent_trust:
    description:
      - What the agent trusts for the server. C(system) - OpenSSL's default store and nothing
        else (no C(SSL_CERT_FILE) in its environment). C(ca_file) - C(SSL_CERT_FILE=server_ca) in
        its environment.
      - Default - C(ca_file) when O(server_ca) names a file, else C(system). O(trust) is its old name.
    type: str
    choices: [system, ca_file]
    aliases: [trust]
  server_ca:
    description:
      - The server CA file on the device that the agent's C(SSL_CERT_FILE) names (the agent's
        user must be able to read it), or C(system) for none.
      - O(ca_file) is its old name.
    type: str
    default: system
    aliases: [ca_file]
  verify_timeout:
    description:
      - Total seconds for the whole check (connection, handshake, exchange, every read).
      - O(timeout) is its old name.
    type: float
    default: 10
    aliases: [timeout]
  verify_status_code:
    description:
      - With O(verify_protocol=https), the HTTP statuses that count as success.
      - O(status_code) is its old name.
    type: list
    elements: int
    default: [200]
    aliases: [status_code]
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is no diff.
  platform:
    support: full
    description: POSIX hosts (the agent's Linux devices).
    platforms: posix
notes:
  - Python's C(create_default_context) differs between versions (3.13 adds strict X.509
    checks); the check uses the device's Python, like an agent running there.
seealso:
  - module: autonomy_edge.fleet_mtls.mtls_identity
  - module: autonomy_edge.fleet_mtls.mtls_identity_info
"""

EXAMPLES = r"""
- name: Prove the agent's certificate is accepted by the cloud's WebSocket endpoint
  autonomy_edge.fleet_mtls.mtls_check:
    server_url: https://api.example.com:3001
    owner: agent
  become: true
  register: mtls_check_result

- name: Check the way the stock agent connects (Socket.IO), trusting a private server CA
  autonomy_edge.fleet_mtls.mtls_check:
    server_url: https://gate.example.internal
    verify_protocol: socketio
    owner: agent
    server_ca: /home/agent/.mtls/server-ca.crt
    verify_timeout: 5
  become: true

- name: Only a TLS handshake and a status (a 403 here is no certificate verdict)
  autonomy_edge.fleet_mtls.mtls_check:
    server_url: https://api.example.com
    verify_protocol: https
    verify_url: https://api.example.com/health
    verify_status_code: [200, 204]
"""

RETURN = r"""
agent_id:
  description: The agent ID, the CN of C(client.crt) (what the agent presents itself as).
  returned: when the certificate could be read
  type: str
  sample: "07048933"
protocol:
  description: The exchange checked.
  returned: always
  type: str
  sample: websocket
url:
  description: The URL checked.
  returned: always
  type: str
  sample: https://api.example.com:3001/ws
trust:
  description: The trust the agent was given (C(system) or C(ca_file)).
  returned: always
  type: str
  sample: ca_file
ca_file:
  description: The C(SSL_CERT_FILE) of the agent's environment (empty with C(trust=system)).
  returned: always
  type: str
  sample: /home/agent/.mtls/server-ca.crt
status:
  description: The HTTP status seen (C(101) for an accepted upgrade).
  returned: when the server answered
  type: int
  sample: 101
sid:
  description: The Socket.IO session ID the server assigned (C(socketio) only).
  returned: success with protocol socketio
  type: str
  sample: "kF3c9w0v6bC1AAAB"
tls_version:
  description: The negotiated TLS protocol version.
  returned: when the handshake completed
  type: str
  sample: TLSv1.3
cipher:
  description: The negotiated cipher suite.
  returned: when the handshake completed
  type: str
  sample: TLS_AES_256_GCM_SHA384
server_subject:
  description: The CN of the server certificate (empty when it has none).
  returned: when the handshake completed
  type: str
  sample: api.example.com
client_fingerprint_sha256:
  description: SHA-256 fingerprint (lower-case hex of the DER) of the client certificate.
  returned: when the certificate could be read
  type: str
  sample: 3f6c1a0e9d2b4c8f7a6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180
client_not_after:
  description: Expiry of the client certificate (ISO 8601, UTC).
  returned: when the certificate could be read
  type: str
  sample: "2027-11-27T17:00:00+00:00"
client_days_left:
  description: Whole days until the client certificate expires, by the device clock.
  returned: when the certificate could be read
  type: int
  sample: 364
elapsed_ms:
  description: Milliseconds the whole check took.
  returned: always
  type: int
  sample: 42
failure:
  description: Class of the failure (see the description).
  returned: failed
  type: str
  sample: refused
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import location, option_table
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.check import (
    RESULT_KEYS,
    run_agent_check,
    split_url,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CheckError, ConfigError

# The names this module gave the same settings before they had one name everywhere.
OLD_NAMES = {"verify_protocol": ["protocol"], "verify_url": ["url"], "owner": ["user"], "agent_trust": ["trust"],
             "server_ca": ["ca_file"], "verify_timeout": ["timeout"], "verify_status_code": ["status_code"]}


def argument_spec():
    spec = option_table.argument_spec(option_table.CHECK_OPTIONS, **OLD_NAMES)
    spec["server_url"]["required"] = True
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        try:
            where = location.resolve(params["path"], params["owner"])
        except ConfigError as exc:
            raise CheckError("config", exc.msg) from None
        server_url, path = split_url(params["server_url"], params["verify_url"])
        ca_file = params["server_ca"] if params["server_ca"] not in (None, "", "system") else None
        result = run_agent_check(
            where.path, server_url, protocol=params["verify_protocol"], path=path,
            trust=params["agent_trust"] or ("ca_file" if ca_file else "system"), ca_file=ca_file,
            run_as=(where.uid, where.gid, where.home) if where.owner_given else None,
            timeout=params["verify_timeout"], status_code=tuple(params["verify_status_code"]),
        )
    except CheckError as exc:
        details = dict.fromkeys(RESULT_KEYS)
        details.update(protocol=params["verify_protocol"], url=params["verify_url"] or "")
        details.update(exc.details)
        module.fail_json(msg=exc.message, failure=exc.kind, changed=False, **details)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
