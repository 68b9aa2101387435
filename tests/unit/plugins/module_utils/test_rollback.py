"""rollback.check_reason: free text passes, a near miss of a decision-matrix situation is refused."""

from __future__ import annotations

import pytest

from ansible_collections.tracehub.deploy.plugins.module_utils import rollback
from ansible_collections.tracehub.deploy.plugins.module_utils.errors import MigrationError


@pytest.mark.parametrize("reason", [None, "", "validation_errors", "004_failed", "corruption", "customer reports"])
def test_check_reason_matrix_situation_or_free_text_accepted(reason):
    rollback.check_reason(reason)


@pytest.mark.parametrize(
    ("reason", "meant", "action"),
    [
        ("validation_error", "validation_errors", "level 1 back to 004"),
        ("Validation_Errors", "validation_errors", "level 1 back to 004"),
        ("005-failed", "005_failed", "level 1 back to 004"),
        ("coruption", "corruption", "level 3"),
    ],
)
def test_check_reason_near_miss_refused_naming_the_situation_meant(reason, meant, action):
    with pytest.raises(MigrationError) as caught:
        rollback.check_reason(reason)
    assert f"-e rollback_reason={meant}" in caught.value.msg
    assert action in caught.value.msg
    assert repr(reason) in caught.value.msg
