package io.iotflink.flink.planner;

import java.lang.reflect.Method;
import java.util.function.Supplier;

import org.apache.flink.table.api.CompiledPlan;
import org.apache.flink.table.api.StatementSet;
import org.apache.flink.table.api.TableEnvironment;
import org.apache.flink.table.api.TableException;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamStatementSet;

/**
 * Plans Flink SQL on whichever JVM thread calls it.
 *
 * <p>Calcite's metadata queries, which the optimiser runs for every plan, read their handler
 * provider from a per-thread variable ({@code RelMetadataQueryBase.THREAD_PROVIDERS}); Flink's
 * planner sets it only on the thread that created the planner (Apache Flink JIRA FLINK-23020,
 * "NullPointerException when running PyFlink from a different thread"). PyFlink talks to its JVM
 * through Py4J, which serves each Python-side connection on a JVM thread of its own and opens a
 * second connection whenever two Python threads call at once (a garbage-collected Java object
 * released from another thread is enough). The next EXPLAIN, compile or execute of that Python
 * thread can then run on a JVM thread without a provider, and fails with a
 * {@code NullPointerException: metadataHandlerProvider}.
 *
 * <p>Each method here sets the provider on the calling thread and plans in the same JVM call, so
 * the two cannot land on different threads. The provider is the planner's own default
 * ({@code FlinkDefaultRelMetadataProvider.INSTANCE}), what the planner installs on its own thread.
 * The planner's classes are loaded by its own class loader (flink-table-planner-loader), so they
 * are reached by reflection through the planner object of the given environment.
 */
public final class PlannerThreads {

    private static final String QUERY_BASE = "org.apache.calcite.rel.metadata.RelMetadataQueryBase";
    private static final String JANINO = "org.apache.calcite.rel.metadata.JaninoRelMetadataProvider";
    private static final String PROVIDER = "org.apache.calcite.rel.metadata.RelMetadataProvider";
    private static final String FLINK_PROVIDER =
            "org.apache.flink.table.planner.plan.metadata.FlinkDefaultRelMetadataProvider";

    private PlannerThreads() {}

    /**
     * Installs the planner's metadata provider on the calling thread if it has none, and drops
     * the metadata query the planner's cluster cached (it may have been made without one).
     *
     * @param env a TableEnvironment created by {@code TableEnvironment.create} (its planner is
     *     read through the public {@code getPlanner()} of Flink's implementation)
     * @return true if it was installed by this call, false if the thread had one already
     * @throws TableException the environment has no planner or the planner's classes changed
     */
    public static boolean bind(TableEnvironment env) {
        try {
            Method getPlanner = env.getClass().getMethod("getPlanner");
            Object planner = getPlanner.invoke(env);
            ClassLoader loader = planner.getClass().getClassLoader();
            Class<?> base = Class.forName(QUERY_BASE, true, loader);
            @SuppressWarnings("unchecked")
            ThreadLocal<Object> providers = (ThreadLocal<Object>) base.getField("THREAD_PROVIDERS").get(null);
            // a metadata query the cluster cached while a call without a provider converted SQL
            // (e.g. an INSERT added on this thread before) holds no provider: drop it, the next
            // one is made on this thread, with the provider
            Object context = planner.getClass().getMethod("plannerContext").invoke(planner);
            Object cluster = context.getClass().getMethod("getCluster").invoke(context);
            cluster.getClass().getMethod("invalidateMetadataQuery").invoke(cluster);
            if (providers.get() != null) {
                return false;
            }
            Object flinkProvider = Class.forName(FLINK_PROVIDER, true, loader).getMethod("INSTANCE").invoke(null);
            Class<?> providerType = Class.forName(PROVIDER, true, loader);
            Object janino = Class.forName(JANINO, true, loader).getMethod("of", providerType).invoke(null, flinkProvider);
            providers.set(janino);
            return true;
        } catch (ReflectiveOperationException | ClassCastException exc) {
            throw new TableException("cannot install the planner's metadata provider on thread "
                    + Thread.currentThread().getName(), exc);
        }
    }

    /** {@link #bind}, then {@code call}, in this one JVM call (so on one thread). */
    private static <T> T bound(TableEnvironment env, Supplier<T> call) {
        bind(env);
        return call.get();
    }

    /** {@link StatementSet#explain} on the calling thread; returns the plan text. */
    public static String explain(TableEnvironment env, StatementSet set) {
        return bound(env, set::explain);
    }

    /** {@link StatementSet#compilePlan} on the calling thread. */
    public static CompiledPlan compilePlan(TableEnvironment env, StatementSet set) {
        return bound(env, set::compilePlan);
    }

    /** {@link StatementSet#execute} (submits the job), planned on the calling thread. */
    public static TableResult execute(TableEnvironment env, StatementSet set) {
        return bound(env, set::execute);
    }

    /** {@link CompiledPlan#execute} (submits the job) on the calling thread. */
    public static TableResult execute(TableEnvironment env, CompiledPlan plan) {
        return bound(env, plan::execute);
    }

    /** {@link StreamStatementSet#attachAsDataStream} (plans the set into the environment's
     * DataStream program) on the calling thread. */
    public static void attachAsDataStream(TableEnvironment env, StreamStatementSet set) {
        bound(env, () -> {
            set.attachAsDataStream();
            return null;
        });
    }
}
