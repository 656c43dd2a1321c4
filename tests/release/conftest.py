from __future__ import annotations

from pathlib import Path

import pytest

from tests.release.simulator import ReleaseSimulator


@pytest.fixture
def sim(tmp_path: Path) -> ReleaseSimulator:
    return ReleaseSimulator(tmp_path)


@pytest.fixture
def pkg(sim: ReleaseSimulator) -> Path:
    return sim.package("1.2.3")
