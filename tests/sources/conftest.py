import pathlib
import sys

# corpora.py (media and metadata writers shared by the source tests) is imported as a plain module.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
