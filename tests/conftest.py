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


#: Services of the stack shared by the modules that opt in (module-level ``SHARED_STACK = True``).
SHARED_SERVICES = ("kafka", "flink-jobmanager", "flink-taskmanager")


def _shares_stack(module) -> bool:
    """True when ``module`` opts in to the shared stack (``IOTFLINK_TEST_SHARED_STACK=0``: every
    module starts its own, as before, e.g. to compare timings or isolate a failure)."""
    return bool(getattr(module, "SHARED_STACK", False)) and os.environ.get("IOTFLINK_TEST_SHARED_STACK") != "0"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """Run the modules that share a stack one after another, where the first of them was
    collected (each module's tests keep their order), so the shared stack runs for as long as
    they do and no longer."""
    shared = [it for it in items if _shares_stack(getattr(it, "module", None))]
    if not shared:
        return
    first, ids = items.index(shared[0]), {id(it) for it in shared}
    rest = [it for it in items if id(it) not in ids]
    items[:] = rest[:first] + shared + rest[first:]


class _Shared:
    """The stack of :data:`SHARED_SERVICES` while the opting-in modules run (None before the
    first and after the last)."""

    stack = None


def _start_shared(tmp_path_factory):
    from iotflink.runtime.stack import Stack, free_port_settings  # noqa: PLC0415

    if _Shared.stack is None:
        st = Stack(free_port_settings(tmp_path_factory.mktemp("shared-stack") / "run"))
        try:
            st.start(SHARED_SERVICES)
        except BaseException:
            st.stop()
            raise
        _Shared.stack = st
    return _Shared.stack


def _stop_shared() -> None:
    st, _Shared.stack = _Shared.stack, None
    if st is not None:
        st.stop()


def pytest_sessionfinish(session, exitstatus):
    _stop_shared()


def _module_view(shared, name: str):
    """A :class:`iotflink.runtime.stack.Stack` on the shared stack's processes whose settings name
    topics of the module's own (``<module>-sensor-readings``, ...), so counts of one module
    never mix with another's; the module's topics are created."""
    import dataclasses  # noqa: PLC0415

    from iotflink.runtime.stack import Stack  # noqa: PLC0415

    prefix = name.removeprefix("test_").replace("_", "-")
    base = shared.s.topics
    topics = dataclasses.replace(base, **{f.name: f"{prefix}-{getattr(base, f.name)}"
                                          for f in dataclasses.fields(base)
                                          if isinstance(getattr(base, f.name), str)})
    view = Stack(dataclasses.replace(shared.s, topics=topics))
    view.create_topics()
    return view


def _end_module_jobs(view) -> None:
    """Cancel every job of the cluster that has not ended, and wait until each has (its slots
    free for the next module)."""
    from iotflink.poll import wait_for  # noqa: PLC0415
    from iotflink.runtime.flinkctl import TERMINAL_STATES, FlinkCtl  # noqa: PLC0415

    ctl = FlinkCtl(view.s)
    live = [j["jid"] for j in ctl.list_jobs() if j["state"] not in TERMINAL_STATES]
    for jid in live:
        ctl.cancel(jid)
    wait_for(lambda: all(j["state"] in TERMINAL_STATES for j in ctl.list_jobs() if j["jid"] in live),
             60, what="the module's jobs to end")


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory):
    """The real local stack on free loopback ports, stopped afterwards.

    The module chooses the services with a module-level ``STACK_SERVICES`` tuple (names of
    :data:`iotflink.runtime.stack.SERVICES`; default: all of them), and the number of TaskManagers with
    ``STACK_TASKMANAGERS`` (default: ``IOTFLINK_TASKMANAGERS``). Starting Kafka creates the
    project's topics. Yields the :class:`iotflink.runtime.stack.Stack`.

    A module with ``SHARED_STACK = True`` (its ``STACK_SERVICES`` within
    :data:`SHARED_SERVICES`) gets the one stack of those services that every such module
    shares (started by the first, stopped after the last: they run one after another, see
    :func:`pytest_collection_modifyitems`), seen through settings naming topics of its own
    (prefix: the module's name); at the module's end every job still on the cluster is
    cancelled. Such a module must leave the services as it found them: a service it kills or
    restarts (tests/test_scenarios.py's fault runs kill the TaskManager) is running again
    before its next test, and a service it adds (Mosquitto, the bridge) is stopped when it ends.
    """
    import dataclasses  # noqa: PLC0415

    from iotflink.runtime.stack import SERVICES, Stack, free_port_settings  # noqa: PLC0415

    services = tuple(getattr(request.module, "STACK_SERVICES", SERVICES))
    name = request.module.__name__.rsplit(".", 1)[-1]
    if _shares_stack(request.module):
        assert set(services) <= set(SHARED_SERVICES), f"{name}: {services} not within {SHARED_SERVICES}"
        view = _module_view(_start_shared(tmp_path_factory), name)
        try:
            yield view
        finally:
            try:
                _end_module_jobs(view)
            finally:
                items = request.session.items
                last = max(i for i, it in enumerate(items) if getattr(it, "module", None) is request.module)
                if not any(_shares_stack(getattr(it, "module", None)) for it in items[last + 1:]):
                    _stop_shared()
        return
    cfg = free_port_settings(tmp_path_factory.mktemp(name) / "run")
    if hasattr(request.module, "STACK_TASKMANAGERS"):
        cfg = dataclasses.replace(cfg, taskmanagers=request.module.STACK_TASKMANAGERS)
    st = Stack(cfg)
    try:
        st.start(services)
        yield st
    finally:
        st.stop()
