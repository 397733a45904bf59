"""``python -m eval.bench <job> <args-json> <out-file>``: one measured job in a fresh process (``children.run_child``)."""

import sys

from eval.bench.children import child_main

sys.exit(child_main(sys.argv[1:]))
