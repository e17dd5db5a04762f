"""human-motion: curation of face-video corpora and MotionCharacter."""
__version__ = "0.1.0"
