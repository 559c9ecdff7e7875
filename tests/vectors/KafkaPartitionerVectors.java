// Writes tests/vectors/kafka_partitioner.json: the Java client's own murmur2 and
// default-partitioner values for a fixed set of keys (ASCII, multi-byte UTF-8, every
// length remainder, empty). Run with the broker's jars, nothing downloaded:
//   java -cp 'deploy/kafka/lib/*' tests/vectors/KafkaPartitionerVectors.java > tests/vectors/kafka_partitioner.json
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.kafka.common.utils.Utils;

public class KafkaPartitionerVectors {
    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') out.append('\\').append(c);
            else if (c < 0x20 || c > 0x7e) out.append(String.format("\\u%04x", (int) c));
            else out.append(c);
        }
        return out.append('"').toString();
    }

    public static void main(String[] args) {
        List<String> keys = new ArrayList<>();
        keys.add("");
        keys.add("a");
        keys.add("ab");
        keys.add("abc");
        keys.add("abcd");
        keys.add("acme:user-0001");
        keys.add("globex:user-0042");
        keys.add("t\u00e9nant:\u00fcnit-\u65e5\u672c");
        keys.add("demo:" + "x".repeat(256));
        String[] tenants = {"acme", "globex", "demo", "t0", "tenant-with-a-long-name_and_more"};
        for (String tenant : tenants) {
            for (int i = 0; i < 40; i++) {
                keys.add(tenant + ":user-" + (i * 7919 + tenant.length()));
            }
        }
        int[] counts = {1, 2, 3, 4, 7, 12, 16, 64, 100};
        StringBuilder json = new StringBuilder("{\n  \"partition_counts\": [");
        for (int i = 0; i < counts.length; i++) json.append(i == 0 ? "" : ", ").append(counts[i]);
        json.append("],\n  \"vectors\": [\n");
        for (int i = 0; i < keys.size(); i++) {
            byte[] bytes = keys.get(i).getBytes(StandardCharsets.UTF_8);
            int hash = Utils.murmur2(bytes);
            json.append("    {\"key\": ").append(quote(keys.get(i)))
                .append(", \"murmur2\": ").append(hash)
                .append(", \"partitions\": [");
            for (int j = 0; j < counts.length; j++) {
                json.append(j == 0 ? "" : ", ").append(Utils.toPositive(hash) % counts[j]);
            }
            json.append("]}").append(i + 1 < keys.size() ? ",\n" : "\n");
        }
        json.append("  ]\n}");
        System.out.println(json);
    }
}
