"""Pure pieces of the executor: data diffs and pointer planning."""

from pydantic import BaseModel

from wfe import WorkflowBuilder
from wfe_core.executor import plan
from wfe_core.merge import apply, diff
from wfe_core.models import PointerStatus


def test_concurrent_patches_to_different_keys_both_survive():
    base = {"a": 1, "m": {"x": 1, "y": 2}, "items": [1]}
    left = diff(base, {"a": 2, "m": {"x": 1, "y": 2}, "items": [1]})
    right = diff(base, {"a": 1, "m": {"x": 1, "y": 2, "z": 3}, "items": [1, 2]})
    assert apply(apply(base, left), right) == {
        "a": 2,
        "m": {"x": 1, "y": 2, "z": 3},
        "items": [1, 2],
    }


def test_null_is_a_value_and_removal_is_a_removal():
    base = {"m": {"x": 1, "y": 2}}
    patched = apply(base, diff(base, {"m": {"x": None}}))
    assert patched == {"m": {"x": None}}
    assert base == {"m": {"x": 1, "y": 2}}  # not modified in place
    assert diff(base, {"m": {"x": 1, "y": 2}}).empty


def test_same_key_last_commit_wins_and_types_change():
    base = {"v": 1}
    assert apply(apply(base, diff(base, {"v": 2})), diff(base, {"v": 3})) == {"v": 3}
    assert apply(base, diff(base, {"v": "1"})) == {"v": "1"}  # 1 == "1" is not "unchanged"


class D(BaseModel):
    n: int = 0


async def noop(ctx):
    return None


def test_successors_wait_for_all_or_any_and_count_skips():
    d = (
        WorkflowBuilder("p", data=D)
        .step("a", noop)
        .step("b", noop)
        .step("all", noop, depends_on=["a", "b"])
        .step("any", noop, depends_on_any=["a", "b"])
        .build()
    )
    pointers = plan.initial_pointers(d, 0)
    assert [p.step_name for p in pointers] == ["a", "b"]
    a, b = pointers
    a.status = PointerStatus.COMPLETE
    created = plan.successors(d, a, pointers, 0)
    assert [p.step_name for p in created] == ["any"]
    b.status = PointerStatus.SKIPPED
    created = plan.successors(d, b, [*pointers, *created], 0)
    assert [p.step_name for p in created] == ["all"]


def test_ready_and_next_wake():
    d = WorkflowBuilder("t", data=D).step("a", noop, delay=5).build()
    (p,) = plan.initial_pointers(d, 1_000)
    assert p.sleep_until == 6_000
    assert not plan.is_ready(p, 5_999) and plan.is_ready(p, 6_000)
    assert plan.next_wake([p]) == 6_000
    p.status = PointerStatus.WAITING
    p.sleep_until = None
    assert plan.next_wake([p]) is None and not plan.is_ready(p, 10**12)
    p.event_published = True
    assert plan.is_ready(p, 0)
