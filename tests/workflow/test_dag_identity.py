"""The DAG of the default, the committed small config and the preset, job for job as committed.

A change to the rules or to the path and topology functions that moves, adds or drops a file of any
job fails here; `python -m tests.workflow.dag_snapshot` rewrites the snapshots when that is meant.
"""

import json

import pytest

from tests.conftest import copy_workflow
from tests.workflow.dag_snapshot import CONFIGURATIONS, planned_dag, snapshot_path

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def workflow_copy(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("dag"))


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_the_dag_is_the_committed_one(workflow_copy, name):
    expected = json.loads(snapshot_path(name).read_text())
    planned = planned_dag(name, workflow_copy)
    missing = [job for job in expected if job not in planned]
    extra = [job for job in planned if job not in expected]
    assert not missing and not extra, (
        f"{name}: {len(missing)} committed jobs not planned, {len(extra)} planned jobs not committed; "
        f"first of each: {missing[:1]} {extra[:1]}\n(rewrite with `python -m tests.workflow.dag_snapshot` if meant)"
    )
    assert len(planned) == len(expected)
