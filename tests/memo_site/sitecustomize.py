"""On PYTHONPATH in the CLI subprocesses the tests start: the test session's graph memo (tests/graph_memo.py)."""

import os
import sys

if os.environ.get("PAUMER_EDGE_TEST_GRAPH_MEMO"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import graph_memo

    sys.path.pop(0)
    graph_memo.install(os.environ["PAUMER_EDGE_TEST_GRAPH_MEMO"])
