"""Shared fixtures: each area keeps its own in `tests/fixtures/`, loaded here as plugins."""

import os
from collections.abc import Iterator

import pytest

pytest_plugins = [
    "tests.fixtures.services",
    "tests.fixtures.jobs",
    "tests.fixtures.slack",
    "tests.fixtures.proxy",
]


@pytest.fixture(autouse=True, scope="session")
def _aws_kept_local() -> Iterator[None]:
    """boto3 never reads this machine's AWS files or asks the EC2 instance-metadata address:
    a test that reaches S3 without the `s3_env` credentials fails instead of going elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        for name in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            patch.delenv(name, raising=False)
        yield
