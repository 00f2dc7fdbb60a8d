"""Planning SQL from a JVM thread the planner was not created on (jobs.common.explain /
compile_plan / execute, ``PlannerThreads`` in jvm/).

Py4J serves each connection on a JVM thread of its own and opens a new connection whenever two
Python threads call at once; Calcite's metadata provider is per JVM thread, so a plan made on
a connection opened after the TableEnvironment fails (``metadataHandlerProvider``). Each test
puts a new connection where the next call of this thread takes it (Py4J takes the most recently
returned one), so the planning below runs, deterministically, on a JVM thread that has never
planned: first the plain PyFlink call, which fails there, then the project's helper.
"""

from __future__ import annotations

import pytest

from iotflink.settings import PROJECT_ROOT, RulesSettings

pytestmark = pytest.mark.minicluster


def _next_call_on_a_new_jvm_thread() -> None:
    """The next Py4J call of this Python thread runs on a new connection (a new JVM thread)."""
    from pyflink.java_gateway import get_gateway  # noqa: PLC0415

    client = get_gateway()._gateway_client  # Py4J's connection pool (a deque, most recent last)
    client.deque.append(client._create_connection())


def _datagen_to_blackhole(t_env, name: str):
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name}_src (v BIGINT) WITH ("
                      "'connector' = 'datagen', 'number-of-rows' = '10')")
    t_env.execute_sql(f"CREATE TEMPORARY TABLE {name}_snk (v BIGINT) WITH ('connector' = 'blackhole')")
    stmts = t_env.create_statement_set()
    stmts.add_insert_sql(f"INSERT INTO {name}_snk SELECT v FROM {name}_src WHERE v > 0")
    return stmts


def test_plain_explain_fails_on_a_new_jvm_thread_and_the_helper_plans():
    from jobs import common  # noqa: PLC0415
    from jobs.rules import local_env  # noqa: PLC0415

    t_env = local_env()
    stmts = _datagen_to_blackhole(t_env, "e")
    _next_call_on_a_new_jvm_thread()
    with pytest.raises(Exception, match="metadataHandlerProvider"):
        stmts.explain()
    _next_call_on_a_new_jvm_thread()
    plan = common.explain(t_env, stmts)
    assert "Calc(select=[v], where=[(v > 0)])" in plan and "e_snk" in plan


def test_compile_and_execute_on_a_new_jvm_thread():
    from jobs import common  # noqa: PLC0415
    from jobs.rules import local_env  # noqa: PLC0415

    t_env = local_env()
    _next_call_on_a_new_jvm_thread()
    plan = common.compile_plan(t_env, _datagen_to_blackhole(t_env, "c"))
    assert "c_snk" in plan.as_json_string()
    _next_call_on_a_new_jvm_thread()
    common.execute(t_env, _datagen_to_blackhole(t_env, "x")).wait()
    _next_call_on_a_new_jvm_thread()
    common.execute(t_env, plan).wait()


def test_rules_validate_on_a_new_jvm_thread(monkeypatch):
    """``iotflink rules validate`` plans every shipped rule after its environment was made on
    another JVM thread (what failed when another Python thread had used the gateway)."""
    import io  # noqa: PLC0415

    from iotflink.runtime import rules_cli  # noqa: PLC0415
    from jobs import rules as R  # noqa: PLC0415

    made = R.validate_env

    def env_then_new_thread():
        t_env = made()
        _next_call_on_a_new_jvm_thread()
        return t_env

    monkeypatch.setattr(R, "validate_env", env_then_new_thread)
    out = io.StringIO()
    errors = rules_cli.validate(RulesSettings(rules_dir=PROJECT_ROOT / "sql" / "rules"), out=out)
    assert errors == 0, out.getvalue()
    assert out.getvalue().count("ok    ") == len(list((PROJECT_ROOT / "sql" / "rules").glob("*.sql")))
