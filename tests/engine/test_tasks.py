"""How clips are handed to workers: tasks of one shard, sized by the measured cost of a clip, small at the end,
and clips a worker did not start handed out again first."""

from __future__ import annotations

from human_motion.engine.tasks import TaskPlanner


def clips(n: int, per_shard: int) -> list[tuple[int, int, str]]:
    return [(i // per_shard, i, f"spec{i}") for i in range(n)]


def test_a_task_never_spans_two_shards_and_every_clip_goes_out_once():
    planner = TaskPlanner(iter(clips(100, 7)), 100, workers=2, min_clips=3)
    tasks = list(planner)
    assert [c for t in tasks for c in t] == clips(100, 7)
    assert all(len({shard for shard, _, _ in t}) == 1 for t in tasks)
    assert all(len(t) >= 3 or t[-1][1] % 7 == 6 or t[-1][1] == 99 for t in tasks)  # short only at a shard's end


def test_cheap_clips_go_out_hundreds_at_a_time_and_expensive_ones_alone():
    planner = TaskPlanner(iter(clips(10_000, 10_000)), 10_000, workers=2, target_s=1.0, max_clips=512)
    first = planner.next_task()
    assert len(first) == 1  # nothing measured yet
    planner.observe(len(first), 0.001)  # a millisecond a clip (rejected at probe)
    assert len(planner.next_task()) == 512
    for _ in range(20):  # then clips of two seconds each: the estimate follows
        planner.observe(1, 2.0)
    assert len(planner.next_task()) == 1


def test_the_last_tasks_are_a_share_of_what_is_left():
    planner = TaskPlanner(iter(clips(40, 40)), 40, workers=2, target_s=100.0)
    planner.observe(1, 0.001)  # cheap: the estimate alone would hand out everything at once
    sizes = [len(t) for t in planner]
    assert sizes[0] == 10 and sizes[-1] == 1 and sum(sizes) == 40  # a quarter of what is left, down to one
    assert sizes == sorted(sizes, reverse=True)


def test_clips_given_back_go_out_next_in_their_order():
    planner = TaskPlanner(iter(clips(10, 10)), 10, workers=1, min_clips=4, max_clips=4)
    task = planner.next_task()
    planner.give_back(task[1:])  # the worker ran the first clip only, then its budget was spent
    again = planner.next_task()
    assert again == task[1:] + [clips(10, 10)[4]]
    rest = [c for t in planner for c in t]
    assert [c[1] for c in task[:1] + again + rest] == list(range(10))
