"""CDS Hipsgen's LINT (IVOA HiPS 1.0 conformance) on a catalogue HiPS skyvault built.

Needs Java and Debian's ``aladin`` package (``apt-get install aladin``: Aladin 12.001, which
ships Hipsgen); skipped with that reason where it is absent.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from skyvault.catalog.layout import TableName
from skyvault.hips import TileLimits, build_catalog_hips, hips_dir

ALADIN_JAR = Path("/usr/share/java/aladin.jar")

pytestmark = pytest.mark.skipif(
    not ALADIN_JAR.exists() or shutil.which("java") is None,
    reason="Hipsgen needs Java and Debian's aladin package (apt-get install aladin)",
)


def _lint(root: Path) -> str:
    done = subprocess.run(
        ["java", "-Xmx512m", "-jar", str(ALADIN_JAR), "-hipsgen", f"out={root}", "LINT"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.mark.slow
def test_hipsgen_lint_accepts_the_catalogue_hips(hips_data: Path, tmp_path: Path) -> None:
    build_catalog_hips(hips_data, "sky.clustered", "mag", limits=TileLimits(tile=100))
    copy = tmp_path / "hips"
    shutil.copytree(hips_dir(hips_data, TableName("sky", "clustered")).resolve(), copy)
    out = _lint(copy)
    assert "is IVOA HiPS 1.0 compatible" in out, out
    assert "not IVOA HiPS 1.0 compatible" not in out, out
    for part in (
        '"properties" file ok',
        '"Moc.fits" ok',
        "Norder1/Allsky.tsv] ok",
        '"metadata.xml" ok',
    ):
        assert part in out, out
    # The check can fail: without its mandatory keywords the same HiPS is refused.
    props = copy / "properties"
    props.write_text(
        "".join(line + "\n" for line in props.read_text().splitlines() if "hips_frame" not in line)
    )
    assert "not IVOA HiPS 1.0 compatible" in _lint(copy)
