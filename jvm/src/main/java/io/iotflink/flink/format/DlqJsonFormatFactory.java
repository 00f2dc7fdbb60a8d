package io.iotflink.flink.format;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.configuration.ConfigOption;
import org.apache.flink.configuration.ConfigOptions;
import org.apache.flink.configuration.ReadableConfig;
import org.apache.flink.formats.json.JsonFormatFactory;
import org.apache.flink.table.connector.ChangelogMode;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.factories.DeserializationFormatFactory;
import org.apache.flink.table.factories.DynamicTableFactory;
import org.apache.flink.table.types.DataType;

import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Table format {@code json-dlq}: Flink's JSON format that never fails the job on one record.
 *
 * <p>Decoding is delegated to Flink's own {@code json} format (same parser, same type
 * conversions, same options: {@code json-dlq.fail-on-missing-field}, {@code
 * json-dlq.timestamp-format.standard}, ...). A record that the JSON format rejects, or that
 * breaks one of the checks below, is not thrown: it becomes a row whose dead-letter columns
 * are set, so the query can route it to a dead-letter table and go on. The table's physical
 * (value) columns must include three dead-letter columns, found by name:
 *
 * <ul>
 *   <li>{@code reason-field} (default {@code dlq_reason}, STRING): NULL for a good record,
 *       else one of {@code parse_error}, {@code missing_field}, {@code non_finite},
 *       {@code null_in_map}, {@code no_value};
 *   <li>{@code detail-field} (default {@code dlq_detail}, STRING): what failed, at most 500
 *       characters;
 *   <li>{@code raw-field} (default {@code dlq_raw}, BYTES): the record's bytes, only on a
 *       dead-letter row (NULL on good rows, so good rows do not carry their payload twice).
 * </ul>
 *
 * <p>All other columns are decoded by the JSON format. On a dead-letter row they are NULL, so
 * computed columns over them (a rowtime) must tolerate NULL, e.g. {@code
 * TO_TIMESTAMP_LTZ(COALESCE(ts, 0), 3)}. Checks after a successful parse:
 *
 * <ul>
 *   <li>{@code required-fields} (list, {@code ;}-separated): a NULL in one of them is {@code
 *       missing_field};
 *   <li>DOUBLE/FLOAT columns and the values of MAP columns of DOUBLE/FLOAT must be finite
 *       (the JSON format reads the strings "NaN" and "Infinity" as numbers): {@code non_finite};
 *   <li>keys and values of MAP columns must not be NULL: {@code null_in_map};
 *   <li>a record without a value (Kafka tombstone) is {@code no_value}.
 * </ul>
 *
 * <p>Deserialization only (a source format).
 */
public class DlqJsonFormatFactory implements DeserializationFormatFactory {

    /** Format identifier in {@code 'format' = 'json-dlq'} / {@code 'value.format' = 'json-dlq'}. */
    public static final String IDENTIFIER = "json-dlq";

    public static final ConfigOption<List<String>> REQUIRED_FIELDS =
            ConfigOptions.key("required-fields")
                    .stringType()
                    .asList()
                    .noDefaultValue()
                    .withDescription("Columns that must not be NULL after parsing (';'-separated).");

    public static final ConfigOption<String> REASON_FIELD =
            ConfigOptions.key("reason-field")
                    .stringType()
                    .defaultValue("dlq_reason")
                    .withDescription("STRING column that receives the dead-letter reason.");

    public static final ConfigOption<String> DETAIL_FIELD =
            ConfigOptions.key("detail-field")
                    .stringType()
                    .defaultValue("dlq_detail")
                    .withDescription("STRING column that receives the dead-letter detail.");

    public static final ConfigOption<String> RAW_FIELD =
            ConfigOptions.key("raw-field")
                    .stringType()
                    .defaultValue("dlq_raw")
                    .withDescription("BYTES column that receives the raw record of a dead letter.");

    private final JsonFormatFactory json = new JsonFormatFactory();

    @Override
    public DecodingFormat<DeserializationSchema<RowData>> createDecodingFormat(
            DynamicTableFactory.Context context, ReadableConfig formatOptions) {
        DecodingFormat<DeserializationSchema<RowData>> inner =
                json.createDecodingFormat(context, formatOptions);
        List<String> required = formatOptions.getOptional(REQUIRED_FIELDS).orElse(List.of());
        String reason = formatOptions.get(REASON_FIELD);
        String detail = formatOptions.get(DETAIL_FIELD);
        String raw = formatOptions.get(RAW_FIELD);
        return new DecodingFormat<>() {
            @Override
            public DeserializationSchema<RowData> createRuntimeDecoder(
                    DynamicTableSource.Context ctx, DataType physicalDataType) {
                return DlqJsonDeserializationSchema.create(
                        ctx, physicalDataType, inner, required, reason, detail, raw);
            }

            @Override
            public ChangelogMode getChangelogMode() {
                return ChangelogMode.insertOnly();
            }
        };
    }

    @Override
    public String factoryIdentifier() {
        return IDENTIFIER;
    }

    @Override
    public Set<ConfigOption<?>> requiredOptions() {
        return json.requiredOptions();
    }

    @Override
    public Set<ConfigOption<?>> optionalOptions() {
        Set<ConfigOption<?>> options = new HashSet<>(json.optionalOptions());
        options.addAll(Arrays.asList(REQUIRED_FIELDS, REASON_FIELD, DETAIL_FIELD, RAW_FIELD));
        return options;
    }

    @Override
    public Set<ConfigOption<?>> forwardOptions() {
        return json.forwardOptions();
    }
}
