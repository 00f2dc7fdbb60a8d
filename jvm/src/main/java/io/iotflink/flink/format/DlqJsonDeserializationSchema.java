package io.iotflink.flink.format;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.table.api.DataTypes;
import org.apache.flink.table.api.ValidationException;
import org.apache.flink.table.connector.format.DecodingFormat;
import org.apache.flink.table.connector.source.DynamicTableSource;
import org.apache.flink.table.data.ArrayData;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.MapData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.types.DataType;
import org.apache.flink.table.types.logical.LogicalType;
import org.apache.flink.table.types.logical.LogicalTypeRoot;
import org.apache.flink.table.types.logical.MapType;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/**
 * Runtime decoder of the {@code json-dlq} format: see {@link DlqJsonFormatFactory}.
 *
 * <p>Per record: the JSON decoder parses the data columns; any exception, or a failed check,
 * yields a row with only the three dead-letter columns set. Never throws for a record.
 */
public final class DlqJsonDeserializationSchema implements DeserializationSchema<RowData> {

    private static final long serialVersionUID = 1L;

    /** Longest {@code dlq_detail}, characters. */
    static final int MAX_DETAIL_CHARS = 500;

    private final DeserializationSchema<RowData> inner;
    private final TypeInformation<RowData> producedType;
    private final int arity;
    /** For each inner (data) column, its position in the produced row. */
    private final int[] outerPos;
    private final LogicalType[] innerTypes;
    private final String[] innerNames;
    private final int[] requiredInner;
    private final int reasonPos;
    private final int detailPos;
    private final int rawPos;
    private transient RowData.FieldGetter[] getters;

    private DlqJsonDeserializationSchema(
            DeserializationSchema<RowData> inner,
            TypeInformation<RowData> producedType,
            int arity,
            int[] outerPos,
            LogicalType[] innerTypes,
            String[] innerNames,
            int[] requiredInner,
            int reasonPos,
            int detailPos,
            int rawPos) {
        this.inner = inner;
        this.producedType = producedType;
        this.arity = arity;
        this.outerPos = outerPos;
        this.innerTypes = innerTypes;
        this.innerNames = innerNames;
        this.requiredInner = requiredInner;
        this.reasonPos = reasonPos;
        this.detailPos = detailPos;
        this.rawPos = rawPos;
    }

    /**
     * Build the decoder for {@code physicalDataType} (a ROW of the table's value columns).
     *
     * @throws ValidationException a dead-letter column is missing or has the wrong type, or a
     *     required field is not a column
     */
    static DlqJsonDeserializationSchema create(
            DynamicTableSource.Context ctx,
            DataType physicalDataType,
            DecodingFormat<DeserializationSchema<RowData>> json,
            List<String> required,
            String reasonField,
            String detailField,
            String rawField) {
        List<String> names = DataType.getFieldNames(physicalDataType);
        List<DataType> types = DataType.getFieldDataTypes(physicalDataType);
        int reasonPos = position(names, types, reasonField, LogicalTypeRoot.VARCHAR);
        int detailPos = position(names, types, detailField, LogicalTypeRoot.VARCHAR);
        int rawPos = position(names, types, rawField, LogicalTypeRoot.VARBINARY);
        List<DataTypes.Field> innerFields = new ArrayList<>();
        List<Integer> outer = new ArrayList<>();
        for (int i = 0; i < names.size(); i++) {
            if (i == reasonPos || i == detailPos || i == rawPos) {
                continue;
            }
            innerFields.add(DataTypes.FIELD(names.get(i), types.get(i)));
            outer.add(i);
        }
        DataType innerType = DataTypes.ROW(innerFields).notNull();
        String[] innerNames = innerFields.stream().map(DataTypes.AbstractField::getName).toArray(String[]::new);
        LogicalType[] innerTypes = innerFields.stream()
                .map(f -> f.getDataType().getLogicalType()).toArray(LogicalType[]::new);
        int[] requiredInner = new int[required.size()];
        for (int r = 0; r < required.size(); r++) {
            int idx = List.of(innerNames).indexOf(required.get(r).trim());
            if (idx < 0) {
                throw new ValidationException("json-dlq: required field '" + required.get(r)
                        + "' is not a data column of " + List.of(innerNames));
            }
            requiredInner[r] = idx;
        }
        return new DlqJsonDeserializationSchema(
                json.createRuntimeDecoder(ctx, innerType),
                ctx.createTypeInformation(physicalDataType),
                names.size(),
                outer.stream().mapToInt(Integer::intValue).toArray(),
                innerTypes,
                innerNames,
                requiredInner,
                reasonPos,
                detailPos,
                rawPos);
    }

    private static int position(List<String> names, List<DataType> types, String name, LogicalTypeRoot root) {
        int pos = names.indexOf(name);
        if (pos < 0) {
            throw new ValidationException("json-dlq: the table needs a dead-letter column '" + name
                    + "' (" + root + "); columns: " + names);
        }
        LogicalTypeRoot actual = types.get(pos).getLogicalType().getTypeRoot();
        if (actual != root) {
            throw new ValidationException("json-dlq: column '" + name + "' must be " + root + ", is " + actual);
        }
        return pos;
    }

    @Override
    public void open(InitializationContext context) throws Exception {
        inner.open(context);
    }

    private RowData.FieldGetter[] getters() {
        if (getters == null) {
            RowData.FieldGetter[] g = new RowData.FieldGetter[innerTypes.length];
            for (int i = 0; i < g.length; i++) {
                g[i] = RowData.createFieldGetter(innerTypes[i], i);
            }
            getters = g;
        }
        return getters;
    }

    @Override
    public RowData deserialize(byte[] message) throws IOException {
        if (message == null) {
            return deadLetter("no_value", "the record has no value (a Kafka tombstone)", null);
        }
        RowData parsed;
        try {
            parsed = inner.deserialize(message);
        } catch (Throwable t) { // anything the JSON decoder throws is this record's fault
            return deadLetter("parse_error", describe(t), message);
        }
        if (parsed == null) {
            return deadLetter("parse_error", "the JSON decoder returned no row (ignore-parse-errors)", message);
        }
        String problem = check(parsed);
        if (problem != null) {
            int colon = problem.indexOf(':');
            return deadLetter(problem.substring(0, colon), problem.substring(colon + 2), message);
        }
        GenericRowData out = new GenericRowData(arity);
        RowData.FieldGetter[] g = getters();
        for (int i = 0; i < g.length; i++) {
            out.setField(outerPos[i], g[i].getFieldOrNull(parsed));
        }
        return out;
    }

    /** {@code null} if the row passes, else {@code "<reason>: <detail>"}. */
    private String check(RowData row) {
        for (int idx : requiredInner) {
            if (row.isNullAt(idx)) {
                return "missing_field: field '" + innerNames[idx] + "' is missing or null";
            }
        }
        for (int i = 0; i < innerTypes.length; i++) {
            if (row.isNullAt(i)) {
                continue;
            }
            LogicalTypeRoot root = innerTypes[i].getTypeRoot();
            if (root == LogicalTypeRoot.DOUBLE) {
                if (!Double.isFinite(row.getDouble(i))) {
                    return "non_finite: field '" + innerNames[i] + "' is " + row.getDouble(i);
                }
            } else if (root == LogicalTypeRoot.FLOAT) {
                if (!Float.isFinite(row.getFloat(i))) {
                    return "non_finite: field '" + innerNames[i] + "' is " + row.getFloat(i);
                }
            } else if (root == LogicalTypeRoot.MAP) {
                String p = checkMap(innerNames[i], (MapType) innerTypes[i], row.getMap(i));
                if (p != null) {
                    return p;
                }
            }
        }
        return null;
    }

    private static String checkMap(String name, MapType type, MapData map) {
        ArrayData keys = map.keyArray();
        ArrayData values = map.valueArray();
        LogicalTypeRoot valueRoot = type.getValueType().getTypeRoot();
        for (int j = 0; j < map.size(); j++) {
            if (keys.isNullAt(j) || values.isNullAt(j)) {
                return "null_in_map: field '" + name + "' has a null key or value";
            }
            if (valueRoot == LogicalTypeRoot.DOUBLE && !Double.isFinite(values.getDouble(j))) {
                return "non_finite: " + name + "." + keyText(type, keys, j) + " is " + values.getDouble(j);
            }
            if (valueRoot == LogicalTypeRoot.FLOAT && !Float.isFinite(values.getFloat(j))) {
                return "non_finite: " + name + "." + keyText(type, keys, j) + " is " + values.getFloat(j);
            }
        }
        return null;
    }

    private static String keyText(MapType type, ArrayData keys, int j) {
        LogicalTypeRoot root = type.getKeyType().getTypeRoot();
        if (root == LogicalTypeRoot.VARCHAR || root == LogicalTypeRoot.CHAR) {
            String k = keys.getString(j).toString();
            return k.length() > 80 ? k.substring(0, 80) + "..." : k;
        }
        return "[" + j + "]";
    }

    private GenericRowData deadLetter(String reason, String detail, byte[] raw) {
        GenericRowData out = new GenericRowData(arity);
        out.setField(reasonPos, StringData.fromString(reason));
        String d = detail.length() > MAX_DETAIL_CHARS ? detail.substring(0, MAX_DETAIL_CHARS - 3) + "..." : detail;
        out.setField(detailPos, StringData.fromString(d));
        out.setField(rawPos, raw);
        return out;
    }

    /**
     * The causal chain of {@code t}, innermost last, without the JSON decoder's outer message
     * (it repeats the whole payload, which is already in the raw column).
     */
    static String describe(Throwable t) {
        StringBuilder sb = new StringBuilder();
        int depth = 0;
        for (Throwable c = t; c != null && depth < 6; c = c.getCause(), depth++) {
            String msg = c.getMessage();
            if (msg != null && msg.startsWith("Failed to deserialize JSON") && c.getCause() != null) {
                continue;
            }
            if (sb.length() > 0) {
                sb.append(" <- ");
            }
            String line = msg == null ? "" : msg.split("\n", 2)[0];
            sb.append(c.getClass().getSimpleName()).append(": ").append(line);
        }
        return sb.toString();
    }

    @Override
    public boolean isEndOfStream(RowData nextElement) {
        return false;
    }

    @Override
    public TypeInformation<RowData> getProducedType() {
        return producedType;
    }
}
