"""The window job's compiled plan cache (:func:`jobs.common.load_or_compile`), on PyFlink's own
planner, no services: a miss builds, compiles and stores the plan (0600 in a 0700 directory,
table identifiers only, no connector option); a hit loads it without building; a file that does
not load is compiled again; a cache that cannot be written costs only the caching; other
settings give another key; and the operators of the plan,
compiled or loaded, get exactly the uids the statement set translated directly gets (what a
savepoint of an earlier version of the job maps its state by).
"""

from __future__ import annotations

import json
import stat
from dataclasses import replace

from iotflink.settings import WindowJobSettings
from jobs import sensor_windows as sw
from jobs.common import create_table_env, job_configuration, load_or_compile, reset_exec_node_ids

CFG = WindowJobSettings(kafka_bootstrap="127.0.0.1:9", consumer_group="plan-cache-test")


def _table_env():
    """A table environment of the job with its DDL run and its options set (as ``main()``)."""
    t_env = create_table_env(job_configuration(CFG, CFG.job_name))
    for ddl in sw.job_ddl(CFG):
        t_env.execute_sql(ddl)
    sw.configure_windowing(t_env, CFG)
    return t_env


def _uids(transformations) -> list[tuple[str, str]]:
    """(uid, name) of every transformation reachable from ``transformations`` (Java objects)."""
    out, seen, stack = set(), set(), list(transformations)
    while stack:
        t = stack.pop()
        if t.getId() in seen:
            continue
        seen.add(t.getId())
        if t.getUid() is not None:
            out.add((t.getUid(), t.getName()))
        stack.extend(list(t.getInputs()))
    return sorted(out)


def _direct_uids(t_env) -> list[tuple[str, str]]:
    """The uids ``StatementSet.execute()`` gives the job: its operations translated as a fresh
    client (a new ``flink run``) translates them, exec node ids from 1."""
    stmts = sw.build(t_env, CFG, *sw.JOB_TABLES)._j_statement_set
    cls = stmts.getClass()
    while "operations" not in [f.getName() for f in cls.getDeclaredFields()]:
        cls = cls.getSuperclass()
    field = cls.getDeclaredField("operations")
    field.setAccessible(True)
    reset_exec_node_ids(t_env)
    return _uids(t_env._j_tenv.getPlanner().translate(field.get(stmts)))


def _plan_uids(t_env, plan) -> list[tuple[str, str]]:
    j_plan = plan._j_compiled_plan
    field = j_plan.getClass().getDeclaredField("internalPlan")
    field.setAccessible(True)
    return _uids(t_env._j_tenv.getPlanner().translatePlan(field.get(j_plan)))


def test_plan_cache_miss_hit_and_uids(tmp_path):
    cache = tmp_path / "plan-cache"
    direct = _direct_uids(_table_env())
    assert len(direct) > 15 and ("1_source", "readings[1]") in direct

    builds = []
    t_env = _table_env()
    key = sw.plan_key(t_env, CFG)

    def build():
        builds.append(1)
        return sw.build(t_env, CFG, *sw.JOB_TABLES)

    compiled = load_or_compile(t_env, build, key, cache, CFG.job_name)
    assert builds == [1]
    (path,) = cache.iterdir()
    assert path.name == f"{CFG.job_name}-{key}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    text = path.read_text()
    assert "properties.bootstrap.servers" not in text and "127.0.0.1:9" not in text  # identifiers only
    assert _plan_uids(t_env, compiled) == direct

    t_env2 = _table_env()
    assert sw.plan_key(t_env2, CFG) == key  # the same job version and settings in another client
    loaded = load_or_compile(t_env2, lambda: builds.append(2), key, cache, CFG.job_name)
    assert builds == [1], "a cached plan is loaded, not built"
    assert _plan_uids(t_env2, loaded) == direct

    path.write_text("{ not a plan")
    t_env3 = _table_env()

    def build3():
        builds.append(3)
        return sw.build(t_env3, CFG, *sw.JOB_TABLES)

    load_or_compile(t_env3, build3, key, cache, CFG.job_name)
    assert builds == [1, 3]
    assert json.loads(path.read_text())["nodes"]

    not_a_dir = tmp_path / "a-file"
    not_a_dir.write_text("")
    t_env4 = _table_env()
    unstored = load_or_compile(t_env4, lambda: sw.build(t_env4, CFG, *sw.JOB_TABLES), key, not_a_dir, CFG.job_name)
    assert _plan_uids(t_env4, unstored) == direct  # a cache that cannot be written: the job still runs

    assert sw.plan_key(_table_env(), replace(CFG, plan_cache_dir=str(tmp_path))) == key  # not a job setting
    assert sw.plan_key(_table_env(), replace(CFG, window_size_ms=30_000)) != key
    assert sw.plan_key(_table_env(), replace(CFG, consumer_group="another")) != key  # in the DDL
