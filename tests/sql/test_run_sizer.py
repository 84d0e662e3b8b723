"""How many plain step commits one set of statements takes: sized from what each of
its statements has cost per row, so a group transaction stays within its time budget
whatever commits cost, and a statement that turns slow is learned from a small run."""

from __future__ import annotations

from wfe_core.models import ExecutionPointer, StepCommit
from wfe_sql.commit import PreparedCommit, prepare_commit
from wfe_sql.plain_commits import RunSizer

BUDGET = 0.05


def commit(updated: int = 0, new: int = 1) -> PreparedCommit:
    def pointers(n: int) -> list[ExecutionPointer]:
        return [ExecutionPointer(id=f"p{i}", step_id=i, step_name="s") for i in range(n)]

    return prepare_commit(
        StepCommit(
            workflow_id="wf",
            owner="host",
            token=1,
            new_pointers=pointers(new),
            updated_pointers=pointers(updated),
            has_parent=False,
            has_subscriptions=False,
        )
    )


def test_rows_of_a_kind_never_measured_go_at_most_first_at_a_time():
    sizer = RunSizer(BUDGET, most=200, first=8)
    assert sizer.take([commit(new=0)] * 50) == 8
    assert sizer.take([commit(new=0)] * 3) == 3


def test_cheap_statements_take_up_to_the_most():
    sizer = RunSizer(BUDGET, most=200)
    for kind in RunSizer.KINDS:
        sizer.observe(kind, 0.001, 100)  # 10 µs a row
    assert sizer.take([commit(updated=1)] * 500) == 200


def test_a_kind_first_seen_is_taken_in_a_small_run_even_when_the_others_are_cheap():
    sizer = RunSizer(BUDGET, most=200, first=8)
    sizer.observe("rows", 0.001, 100)
    sizer.observe("new", 0.001, 100)
    assert sizer.take([commit()] * 500) == 200
    # The first commits that update a pointer: that statement's cost is unknown.
    assert 1 < sizer.take([commit(updated=1)] * 500) <= 8


def test_a_slow_statement_keeps_runs_to_one_until_it_is_cheap_again():
    sizer = RunSizer(BUDGET, most=200)
    sizer.observe("rows", 0.001, 100)
    sizer.observe("new", 0.001, 100)
    sizer.observe("updated", 0.8, 8)  # 0.1 s a row: two do not fit in the budget
    assert sizer.take([commit(updated=1)] * 50) == 1
    assert sizer.take([commit()] * 50) == 50  # commits that update no pointer still go together
    runs = [sizer.take([commit(updated=1)] * 50) for _ in range(40)]
    assert runs[0] == 1 and runs[-1] > 1  # the cost decayed: a run of two tries again
    sizer.observe("updated", 0.2, 2)  # still slow: back to one
    assert sizer.take([commit(updated=1)] * 50) == 1
