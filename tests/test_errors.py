"""The error vocabulary: every user-visible error class in ``skyvault.errors``, one wording
for faults whose details went to the log."""

from __future__ import annotations

import importlib
import pkgutil

import skyvault
from skyvault import errors
from skyvault.errors import InternalError, SkyvaultError, internal_error


def _subclasses(cls: type[SkyvaultError]) -> set[type[SkyvaultError]]:
    out: set[type[SkyvaultError]] = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def test_every_user_visible_error_class_lives_in_errors() -> None:
    for module in pkgutil.walk_packages(skyvault.__path__, "skyvault."):
        importlib.import_module(module.name)
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in _subclasses(SkyvaultError)
        if cls.__module__ != "skyvault.errors" and not cls.__module__.startswith("tests")
    )
    assert elsewhere == []
    public = {name for name in dir(errors) if not name.startswith("_")}
    assert {cls.__name__ for cls in _subclasses(SkyvaultError)} <= public
    assert set(errors.__all__) <= public


def test_internal_error_wording() -> None:
    error = internal_error()
    assert isinstance(error, InternalError) and error.http_status == 500
    assert str(error) == "the query failed inside the service; it has been logged"
    assert str(internal_error("the job failed inside the service", logged="the fault")) == (
        "the job failed inside the service; the fault has been logged"
    )
