"""The crash journal's arithmetic, without Ray: what counts as a crash of a clip."""

from __future__ import annotations

from human_motion.engine.crashes import MIN_CRASHES, CrashJournal


def test_a_batch_holding_several_windows_of_a_clip_is_one_attempt_at_it():
    journal = CrashJournal()
    journal.begin(["0:1", "0:1", "0:1", "0:2"], "caption")  # three windows of clip 0:1 and one of 0:2; the worker dies
    assert journal.suspects(["0:1", "0:2", "0:3"]) == [True, True, False]
    for _ in range(3):  # the retry runs clip 0:1's windows one at a time, and they finish
        journal.begin(["0:1"], "caption")
        journal.end(["0:1"])
    journal.begin(["0:2"], "caption")  # clip 0:2 dies again
    unfinished = journal.unfinished()
    assert unfinished == {"0:1": {"stage": "caption", "crashes": 1}, "0:2": {"stage": "caption", "crashes": 2}}
    assert [k for k, v in unfinished.items() if v["crashes"] >= MIN_CRASHES] == ["0:2"]
