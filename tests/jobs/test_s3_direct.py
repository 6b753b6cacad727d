"""Direct S3 PUTs sign exactly what botocore's own S3 signer signs."""

from __future__ import annotations

import datetime
import hashlib

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from jobs._s3_direct import _KnownPayloadAuth

BODY = b"%PDF-1.7 board minutes"
URL = "http://127.0.0.1:9/bucket/Deal%20%5B2024%5D/na%C3%AFve%20%231.pdf"


def request_for(body: bytes) -> AWSRequest:
    headers = {"Content-Length": str(len(body)), "x-amz-checksum-sha256": "abc="}
    return AWSRequest("PUT", URL, data=body, headers=headers)


@pytest.mark.parametrize("token", [None, "session-token"])
def test_a_known_payload_hash_gives_botocores_own_signature(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    moment = datetime.datetime(2026, 12, 4, 12, 0, 0)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)
    credentials = Credentials("AKIDEXAMPLE", "secret", token)
    ours, theirs = request_for(BODY), request_for(BODY)
    ours.context["payload_sha256"] = hashlib.sha256(BODY).hexdigest()

    _KnownPayloadAuth(credentials, "s3", "eu-west-1").add_auth(ours)
    S3SigV4Auth(credentials, "s3", "eu-west-1").add_auth(theirs)  # hashes the body itself

    assert ours.headers["Authorization"] == theirs.headers["Authorization"]
    assert ours.headers["X-Amz-Content-SHA256"] == theirs.headers["X-Amz-Content-SHA256"]


def test_a_wrong_payload_hash_changes_the_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    moment = datetime.datetime(2026, 12, 4, 12, 0, 0)
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: moment)
    credentials = Credentials("AKIDEXAMPLE", "secret")
    ours, theirs = request_for(BODY), request_for(BODY)
    ours.context["payload_sha256"] = hashlib.sha256(b"other bytes").hexdigest()

    _KnownPayloadAuth(credentials, "s3", "eu-west-1").add_auth(ours)
    S3SigV4Auth(credentials, "s3", "eu-west-1").add_auth(theirs)

    assert ours.headers["Authorization"] != theirs.headers["Authorization"]
