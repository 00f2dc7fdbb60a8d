"""Shared pytest configuration: quiet the chatty client libraries in captured logs; the
hypothesis profile; the ``stack`` fixture of the integration tests."""

import logging

import pytest

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


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The real local stack on free loopback ports, one per test module, stopped afterwards.

    The module chooses the services with a module-level ``STACK_SERVICES`` tuple (names of
    :data:`iotflink.stack.SERVICES`; default: all of them), and the number of TaskManagers with
    ``STACK_TASKMANAGERS`` (default: ``IOTFLINK_TASKMANAGERS``). Starting Kafka creates the
    project's topics. Yields the :class:`iotflink.stack.Stack`.
    """
    import dataclasses  # noqa: PLC0415

    from iotflink.stack import SERVICES, Stack, free_port_settings  # noqa: PLC0415

    services = tuple(getattr(request.module, "STACK_SERVICES", SERVICES))
    name = request.module.__name__.rsplit(".", 1)[-1]
    cfg = free_port_settings(tmp_path_factory.mktemp(name) / "run")
    if hasattr(request.module, "STACK_TASKMANAGERS"):
        cfg = dataclasses.replace(cfg, taskmanagers=request.module.STACK_TASKMANAGERS)
    st = Stack(cfg)
    try:
        st.start(services)
        yield st
    finally:
        st.stop()
