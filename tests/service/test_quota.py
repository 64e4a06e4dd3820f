"""The result-storage refusal says what is stored, the limit and the room left, in true sizes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from skyvault.auth import AuthSettings
from skyvault.auth.identity import Identity
from skyvault.auth.limits import LimitsPolicy, UserLimits, format_bytes
from skyvault.config import Settings
from skyvault.errors import UserLimitExceeded
from tests.service.test_uws import OBJECT, create, uws_app, uws_settings, wait_final

GB = 1024**3


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1536, "1.5 KB"),
        (3 * GB // 4, "768 MB"),
        (1024**2 * 1023 + 900 * 1024, "1023 MB"),  # not 1.02e+03 MB, not 1 GB
        (GB, "1 GB"),
        (GB - 1, "1023 MB"),  # rounded down: below the limit never reads as the limit
        (int(1.999 * GB), "1.99 GB"),
        (10 * GB, "10 GB"),
        (12 * 1024**4, "12 TB"),
    ],
)
def test_sizes_read_true(n: int, text: str) -> None:
    assert format_bytes(n) == text


def test_three_quarters_of_the_quota_is_not_the_quota() -> None:
    policy = LimitsPolicy(defaults=UserLimits(max_result_bytes=GB))
    alice = Identity("alice")
    policy.check_result_fits(alice, 3 * GB // 4, GB // 4)  # exactly fills it: fits
    with pytest.raises(UserLimitExceeded) as info:
        policy.check_result_fits(alice, 3 * GB // 4, GB // 4 + 1)
    error = info.value
    assert error.http_status == 429 and error.retry_after is None
    assert error.message == (
        "the result of this job would not fit: your stored results take 768 MB, the limit "
        "is 1 GB, and this job's result is larger than the 256 MB left"
    )
    assert error.hint is not None and "DELETE /tap/async/<id>" in error.hint


def test_a_job_whose_result_does_not_fit_says_what_is_stored(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    auth = settings.auth.model_copy(update={"anonymous_max_result_bytes": 20_000})
    assert isinstance(auth, AuthSettings)
    root = tmp_path_factory.mktemp("quota")
    app = uws_app(uws_settings(settings, root, auth=auth))
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        job_id = create(client, QUERY=f"SELECT TOP 2000 * FROM {OBJECT}", PHASE="RUN")
        assert wait_final(client, job_id) == "ERROR"
        error = client.get(f"/tap/async/{job_id}/error").text
    # Nothing was stored: the partial result is not counted as stored.
    assert (
        "your stored results take 0 B, the limit is 19.5 KB, and this job's result is "
        "larger than the 19.5 KB left" in error
    )
