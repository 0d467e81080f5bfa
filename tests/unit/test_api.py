"""The provisioning API client's rules that need no server: the answer size cap, the format's
ID field, the registry's "unknown ID" answer (tests/module/test_api*.py meet the service)."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.transport import MAX_BODY
from tests.fixtures.product import api_client


def test_oversized_limit_is_one_mebibyte():
    assert MAX_BODY == 1024 * 1024


def test_an_explicit_id_field_wins():
    client = api_client("https://127.0.0.1:9", upload_format="json", id_field="device")
    assert (client.id_field, client.enroll_id_field) == ("device", "device")
    assert api_client("https://127.0.0.1:9").id_field == "id"


@pytest.mark.parametrize("body", [b'{"detail": "Not Found"}', b'{"statusCode": 404, "message": "no such endpoint"}',
                                  b'{"statusCode": 410, "message": "unknown ID 0000ABCD"}', b"<html>404</html>",
                                  b'{"statusCode": 404, "message": "unknown ID 0000ABCDE"}'])
def test_unknown_id_recognition_is_exact(body):
    assert not api.is_unknown_id_answer(404, body, "0000ABCD")
    assert api.is_unknown_id_answer(404, b'{"statusCode": 404, "message": "unknown ID 0000ABCD"}', "0000ABCD")
    assert api.is_unknown_id_answer(410, b'{"statusCode": 410, "message": "ID 0000ABCD was decommissioned"}',
                                    "0000ABCD")
