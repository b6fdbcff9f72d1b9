import os
import sys
from pathlib import Path

# The references in tests/ import as plain modules.
sys.path.insert(0, str(Path(__file__).parent))

# cuBLAS takes its workspace configuration when its first handle is created, so it is
# set here, before any test reaches the GPU: with it, cuBLAS is deterministic where a
# test asks for deterministic algorithms (test_update.py's deterministic_cuda).
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
