import sys
from pathlib import Path

# The textbook baselines in benchmarks/ and the frame helpers of tests/ import as
# plain modules.
root = Path(__file__).parent
sys.path.insert(0, str(root.parent / "tests"))
sys.path.insert(0, str(root))
