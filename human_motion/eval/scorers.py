"""The models of one ``hm eval`` run, loaded once each. A metric whose model is not on this machine is *skipped*
with the reason and the setting that enables it (``weights.Unavailable``), so a run with the default metric list
finishes offline; a setting that names a file or package that is not there stops the run with one line."""

from __future__ import annotations

import dataclasses

from human_motion.config import ConfigError
from human_motion.devices import auto_device
from human_motion.eval.config import METRICS, EvalConfig
from human_motion.eval.report import COLUMNS_OF
from human_motion.eval.weights import Unavailable, first_line, hf_model, hub_offline, torchvision_weights

# Below these frame sides a metric's model sees upsampled pixels and its value is flagged: ArcFace and dlib embed
# 112-150 px face crops; DOVER's views are 224 px crops (CLIP's side comes from its processor).
MIN_SIDE_PX = {"face_similarity": 112, "dover": 224}


@dataclasses.dataclass
class Scorers:
    """The models of one run; each None when its metric is not computed (``not_reported`` says why)."""

    face: object | None = None
    clip: object | None = None
    dynamic_flow: object | None = None
    interpolator: object | None = None
    dover: object | None = None
    intensity: object | None = None
    not_reported: dict = dataclasses.field(default_factory=dict)
    backends: dict = dataclasses.field(default_factory=dict)
    caveats: list = dataclasses.field(default_factory=list)  # why a value is not comparable with the paper's
    min_side_px: dict = dataclasses.field(default_factory=dict)  # metric -> smallest frame side it reads reliably


def _face(cfg: EvalConfig, s: Scorers) -> None:
    from human_motion.eval.face_similarity import FaceSimilarity

    if "insightface" in (cfg.face.detector, cfg.face.embedder):
        _check_insightface_pack(cfg.face.insightface_root, cfg.face.insightface_pack)
    try:
        s.face = FaceSimilarity(cfg.face)
    except FileNotFoundError as e:  # the pack was not here and could not be downloaded (one try)
        raise Unavailable(f"{e}") from None
    s.backends["face_similarity"] = s.face.name
    s.min_side_px["face_similarity"] = MIN_SIDE_PX["face_similarity"]
    if s.face.embedder.kind != "arcface":
        s.caveats.append(f"Face Similarity uses {s.face.embedder.kind} embeddings, not ArcFace as the paper: "
                         "same-person cosines run higher; compare only with runs of the same embedder "
                         "(face.embedder=insightface for the paper's).")


def _check_insightface_pack(root: str | None, pack: str) -> None:
    """Offline, a missing pack is skipped before insightface tries to download it."""
    import os
    import pathlib

    base = pathlib.Path(os.path.expanduser(root or "~/.insightface"))
    if hub_offline() and not any(any(d.glob("*.onnx")) for d in (base / "models" / pack, base) if d.is_dir()):
        raise Unavailable(f"insightface model pack {pack!r} is not under {base / 'models' / pack} and HF_HUB_OFFLINE=1 "
                          f"(no download tried); unzip {pack}.zip there or --set face.insightface_root=FOLDER, or "
                          "--set face.detector=mediapipe --set face.embedder=dlib (offline, not the paper's)")


def _clip(cfg: EvalConfig, s: Scorers) -> None:
    from human_motion.eval.clip_scores import ClipScorer

    name, local = hf_model(cfg.clip.model, "CLIP model", "clip.model")
    try:
        s.clip = ClipScorer(name, auto_device(cfg.clip.device), cfg.clip.batch_size, local_files_only=local)
    except OSError as e:  # not in the cache after all, a folder without the files, or the hub unreachable (one try)
        raise Unavailable(f"CLIP model {cfg.clip.model!r} cannot be loaded ({first_line(e)}); --set clip.model="
                          "a folder holding a CLIPModel and its CLIPProcessor") from None
    s.backends["clip"] = s.clip.name
    s.min_side_px["clip"] = s.clip.min_side_px
    s.caveats.append("CLIP-I/CLIP-T: the paper does not name its CLIP model; values depend on it.")


def _dynamic_degree(cfg: EvalConfig, s: Scorers) -> None:
    from human_motion.eval.vbench import make_dynamic_degree_flow

    dd = cfg.dynamic_degree
    s.dynamic_flow = make_dynamic_degree_flow(dd, auto_device(dd.device))
    s.backends["dynamic_degree"] = getattr(s.dynamic_flow, "name", dd.backend)
    if dd.backend == "dis":
        s.backends["dynamic_degree"] += " (NOT VBench's RAFT: not comparable with published values)"
        s.caveats.append("Dynamic Degree ran on OpenCV DIS flow, not VBench's RAFT.")
    elif dd.backend != "raft_large" or dd.raft_iters != 20:
        s.caveats.append("Dynamic Degree: VBench runs RAFT-large (raft-things) with 20 iterations.")


def _smoothness(cfg: EvalConfig, s: Scorers) -> None:
    if not cfg.smoothness.amt_weights:
        raise Unavailable("needs AMT-S weights: --set smoothness.amt_config=AMT-S.yaml --set "
                          "smoothness.amt_weights=amt-s.pth (and pip install vbench omegaconf)")
    from human_motion.eval.vbench import AmtInterpolator

    s.interpolator = AmtInterpolator(cfg.smoothness.amt_config, cfg.smoothness.amt_weights,
                                     auto_device(cfg.smoothness.device))
    s.backends["motion_smoothness"] = s.interpolator.name


def _dover(cfg: EvalConfig, s: Scorers) -> None:
    if not cfg.dover.weights:
        raise Unavailable("needs DOVER weights: --set dover.config=dover.yml --set dover.weights=DOVER.pth (and the "
                          "VQAssessment/DOVER repository's package)")
    from human_motion.eval.dover import DoverScorer

    s.dover = DoverScorer(cfg.dover.config, cfg.dover.weights, auto_device(cfg.dover.device))
    s.backends["dover"] = s.dover.name
    s.min_side_px["dover"] = MIN_SIDE_PX["dover"]


def _intensity(cfg: EvalConfig, s: Scorers) -> None:
    from human_motion.eval.intensity_fidelity import IntensityMeter

    ic = cfg.intensity
    if ic.backend.startswith("raft") and not ic.raft_weights:  # fetch (or skip) here: the build's flow code
        from torchvision.models import optical_flow  # would download and print on stdout

        weights = optical_flow.Raft_Large_Weights if ic.backend == "raft_large" else optical_flow.Raft_Small_Weights
        torchvision_weights(weights.DEFAULT, "intensity.raft_weights")
    s.intensity = IntensityMeter(ic, auto_device(ic.device))
    s.backends["intensity"] = s.intensity.units["backend"]


LOADERS = {"face_similarity": _face, "clip": _clip, "dynamic_degree": _dynamic_degree,
           "motion_smoothness": _smoothness, "dover": _dover, "intensity_fidelity": _intensity}


def make_scorers(cfg: EvalConfig) -> Scorers:
    """Load each requested metric's model once; record every other one in ``not_reported`` with its reason."""
    s = Scorers()
    for metric in METRICS:
        columns = COLUMNS_OF.get(metric, (metric,))
        if metric not in cfg.metrics:
            s.not_reported.update(dict.fromkeys(columns, "not requested (metrics)"))
            continue
        try:
            LOADERS[metric](cfg, s)
        except Unavailable as e:
            s.not_reported.update(dict.fromkeys(columns, f"skipped: {e}"))
        except (ImportError, FileNotFoundError) as e:  # a setting names code or a file that is not there
            raise ConfigError(first_line(e)) from None
    return s
