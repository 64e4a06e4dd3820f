"""``skyvault hips build``: one line on success, one clear line on a mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyvault.catalog.layout import TableName
from skyvault.cli import main
from skyvault.hips import hips_dir


def test_hips_build_command(hips_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(
        ["hips", "build", "--table", "sky.clustered", "--order-by", "mag", "--descending",
         "--columns", "sid,name", "--max-per-tile", "40", "--data", str(hips_data)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "sky.clustered: catalogue HiPS of 20,000 rows" in out
    root = hips_dir(hips_data, TableName("sky", "clustered"))
    tile = next(root.glob("Norder3/Dir*/Npix*.tsv")).read_text().splitlines()
    assert tile[0] == "ra\tdec\tsid\tname"
    assert 1 <= len(tile) - 1 <= 40
    assert "skyvault_order_by       = mag descending" in (root / "properties").read_text()


def test_hips_build_mistake(hips_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["hips", "build", "--table", "sky.clustered", "--order-by", "magg",
                   "--data", str(hips_data)])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "has no column 'magg'" in err
    assert "Traceback" not in err
