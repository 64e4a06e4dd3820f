"""Settings that contradict themselves are refused, and ``skyvault serve`` says so in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from skyvault import cli
from skyvault.config import Settings


@pytest.mark.parametrize(
    ("default", "most", "values", "message"),
    [
        (
            "job_execution_duration",
            "job_execution_duration_max",
            (7200, 3600),
            "job_execution_duration (7200) is greater than job_execution_duration_max (3600)",
        ),
        (
            "maxrec_default",
            "maxrec_limit",
            (2000, 1000),
            "maxrec_default (2000) is greater than maxrec_limit (1000)",
        ),
        (
            "job_destruction_days",
            "job_destruction_max_days",
            (10.0, 2.5),
            "job_destruction_days (10.0) is greater than job_destruction_max_days (2.5)",
        ),
    ],
)
def test_a_default_above_its_limit_is_refused(
    tmp_path: Path, default: str, most: str, values: tuple[float, float], message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(data_dir=tmp_path, **{default: values[0], most: values[1]})
    assert message in str(caught.value)
    same = Settings(data_dir=tmp_path, **{default: values[1], most: values[1]})
    assert getattr(same, default) == values[1]


def test_the_environment_is_checked_the_same_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYVAULT_JOB_EXECUTION_DURATION", "7200")
    monkeypatch.setenv("SKYVAULT_JOB_EXECUTION_DURATION_MAX", "3600")
    with pytest.raises(ValidationError, match="is greater than job_execution_duration_max"):
        Settings()


def test_every_contradiction_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(
            data_dir=tmp_path,
            maxrec_default=20,
            maxrec_limit=10,
            job_execution_duration=20,
            job_execution_duration_max=10,
        )
    text = str(caught.value)
    assert "maxrec_default (20)" in text and "job_execution_duration (20)" in text


def test_a_lowered_limit_lowers_the_built_in_default(tmp_path: Path) -> None:
    """Only the limit set, below the built-in default: the default is the limit (what
    /capabilities advertises and a job gets), not a refusal."""
    settings = Settings(
        data_dir=tmp_path,
        maxrec_limit=5000,
        job_execution_duration_max=600,
        job_destruction_max_days=2.0,
    )
    assert settings.maxrec_default == 5000
    assert settings.job_execution_duration == 600
    assert settings.job_destruction_days == 2.0
    roomy = Settings(data_dir=tmp_path)
    assert (roomy.maxrec_default, roomy.job_execution_duration) == (100_000, 3600)


def _serve_must_not_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server was started with settings it should refuse")

    monkeypatch.setattr(uvicorn, "run", run)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {
                "SKYVAULT_JOB_EXECUTION_DURATION": "7200",
                "SKYVAULT_JOB_EXECUTION_DURATION_MAX": "60",
            },
            "skyvault: error: invalid settings: job_execution_duration (7200) is greater than "
            "job_execution_duration_max (60): a default may not pass the most a client may ask "
            "for",
        ),
        (
            {"SKYVAULT_JOB_WORKERS": "0"},
            "skyvault: error: invalid settings: SKYVAULT_JOB_WORKERS: Input should be greater "
            "than or equal to 1",
        ),
        (
            {"SKYVAULT_AUTH_MAX_RUNNING": "many"},
            "skyvault: error: invalid settings: SKYVAULT_AUTH_MAX_RUNNING: Input should be a "
            "valid integer, unable to parse string as an integer",
        ),
    ],
)
def test_serve_prints_one_line_for_bad_settings(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    expected: str,
) -> None:
    _serve_must_not_start(monkeypatch)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", "--data", str(tmp_path)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == expected + "\n"


def test_other_validation_errors_are_not_called_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A validation error of some other model is a fault, not the operator's: it is raised."""
    from pydantic import BaseModel

    class Other(BaseModel):
        n: int

    def fail(args: object) -> int:
        Other.model_validate({"n": "x"})
        return 0

    monkeypatch.setattr(cli, "_cmd_tables", fail)
    with pytest.raises(ValidationError):
        cli.main(["tables"])


# --- the data root: one variable for the service and the CLI ----------------------------------


@pytest.fixture
def no_data_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("SKYVAULT_DATA_DIR", raising=False)
    monkeypatch.delenv("SKYVAULT_DATA", raising=False)
    return monkeypatch


def test_the_service_and_the_cli_read_skyvault_data_dir(
    no_data_variables: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_data_variables.setenv("SKYVAULT_DATA_DIR", str(tmp_path))
    assert Settings().data_dir == tmp_path
    assert cli.build_parser().parse_args(["tables"]).data == tmp_path


def test_without_a_variable_the_data_root_is_dot_data(
    no_data_variables: pytest.MonkeyPatch,
) -> None:
    assert Settings().data_dir == Path("data")
    assert cli.build_parser().parse_args(["tables"]).data == Path("data")


def test_the_old_cli_variable_still_works_with_a_warning(
    no_data_variables: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    no_data_variables.setenv("SKYVAULT_DATA", str(tmp_path))
    with pytest.warns(FutureWarning, match="SKYVAULT_DATA is deprecated.*SKYVAULT_DATA_DIR"):
        assert Settings().data_dir == tmp_path
    with pytest.warns(FutureWarning, match="SKYVAULT_DATA is deprecated"):
        assert cli.build_parser().parse_args(["tables"]).data == tmp_path
    no_data_variables.setenv("SKYVAULT_DATA_DIR", str(tmp_path / "new"))  # the new one wins
    assert Settings().data_dir == tmp_path / "new"
    assert cli.build_parser().parse_args(["tables"]).data == tmp_path / "new"
