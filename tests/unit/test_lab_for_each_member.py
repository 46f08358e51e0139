"""lab.up's fan-out over the lab's members: every call runs to its end, the results come
back by member name, and the first failure by member name is raised, named."""

from __future__ import annotations

import pytest

from airgap.errors import AirgapError
from lab.instances import for_each_member
from lab.topology import LabSpec, Member

MEMBERS = LabSpec(name="lab", nodes=2).members


def test_results_by_member_name() -> None:
    assert for_each_member(lambda m: m.role, MEMBERS) == {m.name: m.role for m in MEMBERS}


def test_the_first_failure_by_name_is_raised_after_every_call_ran() -> None:
    ran: list[str] = []

    def fn(m: Member) -> None:
        ran.append(m.name)
        if m.name in ("proxy", "node-2"):
            raise ValueError(f"{m.name} broke")

    with pytest.raises(AirgapError) as info:
        for_each_member(fn, MEMBERS)
    assert sorted(ran) == sorted(m.name for m in MEMBERS)
    assert info.value.brief == "node-2: ValueError: node-2 broke"
    assert info.value.details == "proxy: proxy broke"
    assert info.value.resolution and "lab.shell node-2" in info.value.resolution


def test_an_airgap_error_is_raised_as_it_is() -> None:
    err = AirgapError("registry: no", resolution="fix it")

    def fn(m: Member) -> None:
        if m.role == "registry":
            raise err

    with pytest.raises(AirgapError) as info:
        for_each_member(fn, MEMBERS)
    assert info.value is err
