"""``hm eval``: the metrics of the paper's Table 1 and intensity fidelity, one small module per metric.

- ``command``: the command line (``hm eval``); ``evaluate``: every metric on every video, then the set's values;
- ``scorers``: each metric's model loaded once, or skipped with the reason and the setting that enables it;
- ``weights``: where models come from (no download offline, one try online; user files as tensors only);
- ``inputs``: the evaluation set (videos, references, prompts, asked intensities) and video reading;
- ``face_similarity``: identity cosine between the reference face and each frame's face;
- ``clip_scores``: CLIP-I (reference vs frames) and CLIP-T (prompt vs frames);
- ``vbench``: Dynamic Degree and Motion Smoothness as VBench computes them (flow / interpolator injectable);
- ``dover``: the DOVER score, only from real DOVER weights;
- ``intensity_fidelity``: measured vs asked intensity (Spearman, MAE, a plot);
- ``report``: aggregation, reliability warnings, JSON and the Table 1 Markdown; ``protocol``: generating the set
  from a checkpoint.

``eval/`` may import ``model/`` (the pipeline for ``--protocol``); ``model/`` never imports ``eval/``.
"""
