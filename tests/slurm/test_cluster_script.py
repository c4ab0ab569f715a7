"""The test cluster script never touches a site's Slurm and keeps its state private.

These run the script's refusals only: nothing is installed or started.
"""

import os
import subprocess
from pathlib import Path

import pytest

CLUSTER = Path(__file__).with_name("cluster.sh")


def up(conf_dir: Path, state: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ARENA_SLURM_CONF_DIR": str(conf_dir), "ARENA_SLURM_STATE": str(state)}
    return subprocess.run(["bash", str(CLUSTER), "up"], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", ["slurm.conf", "slurmdbd.conf"])
def test_a_slurm_config_it_did_not_write_is_left_alone(tmp_path, name):
    site = tmp_path / "etc"
    site.mkdir()
    (site / name).write_text("ClusterName=site\n")
    result = up(site, tmp_path / "state")
    assert result.returncode != 0 and f"{site / name} was not written by this script" in result.stderr
    assert (site / name).read_text() == "ClusterName=site\n" and sorted(os.listdir(site)) == [name]
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700  # created private before anything else


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda state: (state.mkdir(), state.chmod(0o777)), "is open to other users (mode 777"),
        (
            lambda state: (state.with_name("elsewhere").mkdir(mode=0o700), state.symlink_to(state.with_name("elsewhere"))),
            "is not a plain directory",
        ),
    ],
)
def test_a_state_directory_others_could_write_is_refused(tmp_path, make, message):
    state = tmp_path / "state"
    make(state)
    result = up(tmp_path / "etc", state)
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "etc").exists()
