import sys
from pathlib import Path

# The textbook baseline in benchmarks/ imports as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
