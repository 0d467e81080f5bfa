# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exceptions raised by the fleet_mtls helpers.

Every message is written for the person running the playbook. No message ever contains key
bytes, request headers or their values: callers build messages from names, paths, statuses
and sanitized server reasons only.
"""
from __future__ import annotations

import traceback


class IdentityError(Exception):
    """Base class: anything the module turns into fail_json."""

    def __init__(self, msg):
        super().__init__(msg)
        self.msg = msg

    def __str__(self):
        return self.msg


class ConfigError(IdentityError):
    """An option value that cannot be used (bad agent_id, bad URL, bad key_size...)."""


class FileSafetyError(IdentityError):
    """The identity directory or one of its files is not safe to use (symlink, foreign owner)."""


class UnreadableError(FileSafetyError):
    """The identity cannot be read by the user the module runs as (never "no identity")."""


class LockError(IdentityError):
    """The identity directory lock could not be taken in time."""


class CertificateError(IdentityError):
    """A certificate, CSR or key could not be parsed or does not have the required profile."""


class StateError(IdentityError):
    """The identity on disk is in a state the module refuses to fix silently."""


class ClockError(StateError):
    """The device clock is too far from the provisioning API's: a certificate made now would be
    refused as not yet valid (or expire early), so nothing is minted or rotated."""


class ApiError(IdentityError):
    """A provisioning API call failed.

    ``definitive`` tells whether the server certainly did not act on the request (connection
    refused before anything was sent, TLS verification failure, a 4xx answer). An ambiguous
    failure (timeout or dropped connection after the request was sent, 5xx after the retries,
    a 2xx whose answer cannot be understood) may have changed the registry.
    """

    def __init__(self, msg, endpoint=None, status=None, reason=None, definitive=True, unknown_id=False):
        super().__init__(msg)
        self.endpoint = endpoint
        self.status = status
        self.reason = reason
        self.definitive = definitive
        # The registry's own "unknown ID" answer (api.UNKNOWN_ID): the ID does not exist there.
        self.unknown_id = unknown_id

    @property
    def ambiguous(self):
        return not self.definitive


class CheckError(IdentityError):
    """A classified failure of the agent check: ``kind`` is one of the classes ``check.py``
    documents; ``details`` hold the result keys known when it failed (never key bytes)."""

    def __init__(self, kind, message, **details):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details


class TransactionError(IdentityError):
    """The identity transaction failed; ``registry_uncertain`` says whether a journal was left."""

    def __init__(self, msg, registry_uncertain=False):
        super().__init__(msg)
        self.registry_uncertain = registry_uncertain


def fail_when_missing(module, *libraries):
    """Fail the Ansible ``module`` on the first ``(name, import_error)`` whose import failed,
    with ansible-core's missing_required_lib message and the import error as the exception."""
    from ansible.module_utils.basic import missing_required_lib  # only modules call this

    for name, error in libraries:
        if error is not None:
            module.fail_json(msg=missing_required_lib(name),
                             exception="".join(traceback.format_exception_only(type(error), error)))


class HeadersNeeded(Exception):
    """A run without the API's headers (``headers_withheld``) that needs a request: raised before
    anything is written; not an IdentityError, so no phase reports it as a failure."""
