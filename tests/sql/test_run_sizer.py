"""How many plain step commits one set of statements takes: sized so a group
transaction stays within its time budget, whatever commits cost."""

from __future__ import annotations

from wfe_sql.plain_commits import RunSizer


def test_a_run_starts_small_until_a_cost_is_seen():
    assert RunSizer(0.05, most=200, first=8).size() == 8


def test_cheap_commits_go_together_up_to_the_most():
    sizer = RunSizer(0.05, most=200)
    sizer.observe(0.002, 20)  # 0.1 ms each: 500 would fit
    assert sizer.size() == 200


def test_slow_commits_shrink_the_run_to_one_and_it_grows_back():
    sizer = RunSizer(0.05, most=200)
    sizer.observe(0.8, 8)  # 0.1 s each: not even two fit in the budget
    assert sizer.size() == 1
    for _ in range(20):
        sizer.observe(0.0001, 1)  # the slowness is gone: commits one by one are cheap
    assert sizer.size() == 200


def test_the_size_follows_the_cost():
    sizer = RunSizer(0.05, most=200)
    sizer.observe(0.01, 1)
    sizer.observe(0.01, 1)
    assert sizer.size() == 5  # 10 ms each: five fit in 50 ms
