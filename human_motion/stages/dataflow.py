"""The build's dataflow, in order: stages that score, and the select steps that apply thresholds between them.

Cheap filters run first, so the expensive stages only see survivors: the header's resolution before any pixel is
decoded, the face checks before quality and identity, the identity check before flow and captions. The engine
(engine/) runs this list in one process or on Ray and appends the shard writer; nothing else decides the order.
"""

from __future__ import annotations

from human_motion.stages.base import Stage, UndeclaredFieldError
from human_motion.stages.caption import Caption
from human_motion.stages.decode import Decode
from human_motion.stages.encode import Encode
from human_motion.stages.faces import Faces
from human_motion.stages.fields import INPUT_FIELDS
from human_motion.stages.flow import FlowIntensity
from human_motion.stages.probe import Probe
from human_motion.stages.quality import Quality
from human_motion.stages.select import Select, select_step

# What the select step after decode checks (hm generate applies the same to a reference photo).
FACE_CHECKS = ("no_face", "several_faces", "small_face", "low_confidence", "face_lost", "too_dark")

DATAFLOW: tuple[type[Stage], ...] = (
    Probe,
    select_step("low_resolution"),
    Decode,
    select_step("shot_cut", *FACE_CHECKS, "low_face_fill"),
    Quality,
    select_step("text_overlay", "low_quality"),
    Faces,
    select_step("identity_switch", reads=("id_embedding",)),
    FlowIntensity,
    Caption,
    Encode,
)

# Stages a config may leave out (``stages:``); probe, decode and encode make the samples and always run.
OPTIONAL = ("quality", "faces", "flow", "caption")
STAGE_NAMES = tuple(s.name for s in DATAFLOW if not issubclass(s, Select))


def dataflow(stages: list[str] | tuple[str, ...] | None = None) -> list[type[Stage]]:
    """The steps of a build that runs ``stages`` (all when None), checked; select steps whose scores no stage
    left in makes are dropped with them."""
    wanted = set(STAGE_NAMES if stages is None else stages) | {"probe", "decode", "encode"}
    steps: list[type[Stage]] = []
    for step in DATAFLOW:
        if issubclass(step, Select):
            made = {s for st in steps for s in st.scores}
            if any(score in made for score in step.needs_scores()):
                steps.append(step)
        elif step.name in wanted:
            steps.append(step)
    check_dataflow(steps)
    return steps


def check_dataflow(steps: list[type[Stage]]) -> None:
    """Every field a step reads is an input or written by a step before it; every score a select step checks is
    declared by a stage before it. Fails before the first clip, naming the step and the field. (An optional stage
    that the config's ``stages`` leaves out still counts as "before" for the steps after it in DATAFLOW: its fields
    are simply unset, and their readers use ``row.get``.)"""
    order = {step: i for i, step in enumerate(DATAFLOW)}
    written, scored = set(INPUT_FIELDS), set()
    for step in steps:
        step.check_header()
        left_out = [s for s in DATAFLOW[:order[step]] if s not in steps] if step in order else []
        readable = written.union(*(s.writes for s in left_out))
        missing = [f for f in step.reads if f not in readable]
        if missing:
            raise UndeclaredFieldError(f"step {step.name!r} reads {missing}, which no earlier step writes; "
                                       "check the order in stages/dataflow.py")
        if issubclass(step, Select):
            unscored = [s for s in step.needs_scores() if s not in scored.union(*(s.scores for s in left_out))]
            if unscored:
                raise UndeclaredFieldError(f"select step {step.__name__} checks {unscored}, which no earlier "
                                           "stage scores")
        written |= set(step.writes)
        scored |= set(step.scores)
