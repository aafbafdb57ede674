"""The old home of the cold-start study still resolves its names, with a deprecation warning."""

from __future__ import annotations

import pytest

from warmrec.experiments.studies import coldstart as study


def test_old_names_resolve_to_the_study_with_a_warning():
    import warmrec.meta.coldstart as old

    with pytest.warns(DeprecationWarning, match="warmrec.experiments.studies.coldstart"):
        assert old.run_coldstart_study is study.run_coldstart_study
    with pytest.warns(DeprecationWarning):
        assert old.ColdStartSettings is study.ColdStartSettings
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018
