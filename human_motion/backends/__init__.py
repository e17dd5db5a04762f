"""Model backends the stages call: face detectors, landmarks and embedders, optical flow, captioners."""
