import sys
from pathlib import Path

# The references in tests/ import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))
