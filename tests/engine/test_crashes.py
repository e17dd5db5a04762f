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


def test_a_task_is_begun_in_one_call_and_its_suspects_are_journaled_by_stage():
    """A worker begins a whole task at once; a clip of a task whose worker died comes back a suspect, is then
    journaled stage by stage, and a second crash names the stage it crashed in."""
    journal = CrashJournal()
    assert journal.start(["0:1", "0:2", "0:3"], "task") == [False, False, False]
    # The worker dies in the middle of the task: every clip of it was begun and none ended.
    assert journal.start(["0:1", "0:2", "0:3"], "task") == [True, True, True]  # the retry: all suspects, none begun
    for stage in ("probe", "decode"):  # the retry journals each suspect by stage: 0:1 and 0:2 finish
        for key in ("0:1", "0:2"):
            journal.begin([key], stage)
            journal.end([key])
    journal.begin(["0:3"], "probe")
    journal.end(["0:3"])
    journal.begin(["0:3"], "faces")  # and 0:3 crashes its worker again, in faces
    unfinished = journal.unfinished()
    assert unfinished["0:3"] == {"stage": "faces", "crashes": 2}
    assert {k for k, v in unfinished.items() if v["crashes"] >= MIN_CRASHES} == {"0:3"}
    assert unfinished["0:1"]["crashes"] == unfinished["0:2"]["crashes"] == 1  # bystanders of the first crash
    journal.reset()  # the next pass (0:3 quarantined) starts from clean counts
    assert journal.start(["0:1", "0:2"], "task") == [False, False]
