"""The evaluation harness: the team's QA set, BEIR benchmarks, reports and comparisons (``rag eval``)."""
