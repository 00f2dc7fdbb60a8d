"""Shared pytest configuration: quiet the chatty client libraries in captured logs."""

import logging

for _name in ("kafka", "paho", "py4j", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Hypothesis: deterministic in CI and locally (derandomize: the examples follow from the test
# itself, no random seed, no example database), a bounded number of examples per test, no
# per-example deadline (a loaded 2-core machine stalls now and then). HYPOTHESIS_PROFILE=dev
# explores with random examples for a local search.
import os  # noqa: E402

from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("ci", derandomize=True, max_examples=400, deadline=None,
                               database=None, print_blob=True)
_hyp_settings.register_profile("dev", max_examples=5000, deadline=None)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
