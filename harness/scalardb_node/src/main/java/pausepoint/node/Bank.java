package pausepoint.node;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.scalar.db.api.DistributedTransaction;
import com.scalar.db.api.DistributedTransactionAdmin;
import com.scalar.db.api.DistributedTransactionManager;
import com.scalar.db.api.Get;
import com.scalar.db.api.Insert;
import com.scalar.db.api.Result;
import com.scalar.db.api.Scan;
import com.scalar.db.api.TableMetadata;
import com.scalar.db.api.Upsert;
import com.scalar.db.exception.transaction.CommitConflictException;
import com.scalar.db.exception.transaction.CrudConflictException;
import com.scalar.db.exception.transaction.TransactionException;
import com.scalar.db.exception.transaction.UnknownTransactionStatusException;
import com.scalar.db.io.DataType;
import com.scalar.db.io.Key;
import com.scalar.db.service.TransactionFactory;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ThreadLocalRandom;

/**
 * Ledger-shaped state in ScalarDB (Consensus Commit over multi-storage).
 *
 * <p>Accounts ("assets") whose id starts with {@code my-} live in the MariaDB namespace, those
 * starting with {@code pg-} in the PostgreSQL namespace. Each asset keeps its history as a hash
 * chain, as ScalarDL's {@code asset} table does: {@code asset(id, age)} rows with the balance
 * after the write, the request and its delta, the previous row's hash and this row's hash
 * ({@link #hash}); {@code asset_metadata(id)} holds the latest age, balance and hash. Every
 * request is recorded in {@code request(rid)} (in the PostgreSQL namespace) with its own result
 * (the assets' new hashes) and, on an auditor, the ledger's result it was given ({@code proof}).
 */
final class Bank implements AutoCloseable {
  static final String ASSET = "asset";
  static final String ASSET_METADATA = "asset_metadata";
  static final String REQUEST = "request";
  static final int MAX_ATTEMPTS = 200;

  /** A request the node refuses without retrying (bad input, unknown account, ...). */
  static final class Rejected extends Exception {
    Rejected(String message) {
      super(message);
    }
  }

  /** The transaction's outcome is not known (commit status unknown, or retries exhausted). */
  static final class Unknown extends Exception {
    Unknown(String message, Throwable cause) {
      super(message, cause);
    }
  }

  private final TransactionFactory factory;
  private final DistributedTransactionManager manager;
  final String nsMysql;
  final String nsPostgres;

  Bank(Properties props) {
    this.factory = TransactionFactory.create(props);
    this.manager = factory.getTransactionManager();
    this.nsMysql = required(props, "pausepoint.node.namespace.mysql");
    this.nsPostgres = required(props, "pausepoint.node.namespace.postgres");
  }

  static String required(Properties props, String key) {
    String v = props.getProperty(key);
    if (v == null || v.isBlank()) {
      throw new IllegalArgumentException("property " + key + " is missing in the node's config");
    }
    return v.trim();
  }

  @Override
  public void close() {
    manager.close();
  }

  // --- schema -------------------------------------------------------------------------------

  /** Create the coordinator tables, both namespaces and their tables (if not there yet). */
  void createSchema() throws Exception {
    try (DistributedTransactionAdmin admin = factory.getTransactionAdmin()) {
      admin.createCoordinatorTables(true);
      TableMetadata asset =
          TableMetadata.newBuilder()
              .addColumn("id", DataType.TEXT)
              .addColumn("age", DataType.INT)
              .addColumn("balance", DataType.BIGINT)
              .addColumn("delta", DataType.BIGINT)
              .addColumn("rid", DataType.TEXT)
              .addColumn("prev_hash", DataType.TEXT)
              .addColumn("hash", DataType.TEXT)
              .addPartitionKey("id")
              .addClusteringKey("age")
              .build();
      TableMetadata assetMetadata =
          TableMetadata.newBuilder()
              .addColumn("id", DataType.TEXT)
              .addColumn("latest_age", DataType.INT)
              .addColumn("balance", DataType.BIGINT)
              .addColumn("hash", DataType.TEXT)
              .addPartitionKey("id")
              .build();
      TableMetadata request =
          TableMetadata.newBuilder()
              .addColumn("rid", DataType.TEXT)
              .addColumn("kind", DataType.TEXT)
              .addColumn("src", DataType.TEXT)
              .addColumn("dst", DataType.TEXT)
              .addColumn("amount", DataType.BIGINT)
              .addColumn("result", DataType.TEXT)
              .addColumn("proof", DataType.TEXT)
              .addColumn("node", DataType.TEXT)
              .addPartitionKey("rid")
              .build();
      for (String ns : List.of(nsMysql, nsPostgres)) {
        admin.createNamespace(ns, true);
        admin.createTable(ns, ASSET, asset, true);
        admin.createTable(ns, ASSET_METADATA, assetMetadata, true);
      }
      admin.createTable(nsPostgres, REQUEST, request, true);
    }
  }

  // --- requests -----------------------------------------------------------------------------

  String namespaceOf(String account) throws Rejected {
    if (account.startsWith("my-")) {
      return nsMysql;
    }
    if (account.startsWith("pg-")) {
      return nsPostgres;
    }
    throw new Rejected("account '" + account + "' must start with my- (MariaDB) or pg- (PostgreSQL)");
  }

  static String hash(String prevHash, String id, int age, long balance, long delta, String rid) {
    String content = prevHash + "|" + id + "|" + age + "|" + balance + "|" + delta + "|" + rid;
    try {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      return HexFormat.of().formatHex(md.digest(content.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  interface Body {
    JsonObject run(DistributedTransaction tx) throws TransactionException, Rejected;
  }

  /** Run {@code body} in a transaction, retrying conflicts with a short random backoff. */
  JsonObject inTransaction(Body body) throws Rejected, Unknown, InterruptedException {
    return inTransaction(body, MAX_ATTEMPTS, 0);
  }

  /**
   * As {@link #inTransaction(Body)}; {@code retryForMs} > 0 keeps retrying for that long (the
   * check: a record prepared by a transaction the coordinator does not know is only resolved by
   * lazy recovery once that transaction has expired, some 15 s after it prepared).
   */
  JsonObject inTransaction(Body body, int maxAttempts, long retryForMs)
      throws Rejected, Unknown, InterruptedException {
    TransactionException last = null;
    long until = System.nanoTime() + retryForMs * 1_000_000L;
    for (int attempt = 0;
        attempt < maxAttempts || (retryForMs > 0 && System.nanoTime() < until);
        attempt++) {
      DistributedTransaction tx;
      try {
        tx = manager.begin();
      } catch (TransactionException e) {
        last = e;
        Thread.sleep(5);
        continue;
      }
      try {
        JsonObject out = body.run(tx);
        tx.commit();
        out.addProperty("attempts", attempt + 1);
        return out;
      } catch (Rejected e) {
        rollback(tx);
        throw e;
      } catch (UnknownTransactionStatusException e) {
        throw new Unknown("commit status unknown: " + e.getMessage(), e);
      } catch (CrudConflictException | CommitConflictException e) {
        rollback(tx);
        last = e;
        Thread.sleep(
            retryForMs > 0
                ? 250
                : ThreadLocalRandom.current().nextInt(1, 5 + Math.min(attempt, 20) * 2));
      } catch (TransactionException e) {
        rollback(tx);
        last = e;
        Thread.sleep(5);
      }
    }
    throw new Unknown("gave up after retrying: " + last, last);
  }

  private static void rollback(DistributedTransaction tx) {
    try {
      tx.rollback();
    } catch (Exception ignored) {
      // the transaction is abandoned either way; lazy recovery cleans up
    }
  }

  private Optional<Result> metadata(DistributedTransaction tx, String account)
      throws TransactionException, Rejected {
    return tx.get(
        Get.newBuilder()
            .namespace(namespaceOf(account))
            .table(ASSET_METADATA)
            .partitionKey(Key.ofText("id", account))
            .build());
  }

  private Optional<Result> existing(DistributedTransaction tx, String rid)
      throws TransactionException {
    return tx.get(
        Get.newBuilder()
            .namespace(nsPostgres)
            .table(REQUEST)
            .partitionKey(Key.ofText("rid", rid))
            .build());
  }

  /** Append one row to an asset's chain; returns the new hash. */
  private String append(
      DistributedTransaction tx, String account, int age, long balance, long delta, String prev,
      String rid) throws TransactionException, Rejected {
    String ns = namespaceOf(account);
    // Read the row first: a record left PREPARED by an aborted or crashed transaction is then
    // resolved by ScalarDB's lazy recovery (a blind insert would fail on it forever).
    Optional<Result> there =
        tx.get(
            Get.newBuilder()
                .namespace(ns)
                .table(ASSET)
                .partitionKey(Key.ofText("id", account))
                .clusteringKey(Key.ofInt("age", age))
                .build());
    if (there.isPresent()) {
      throw new CrudConflictException(
          "asset " + account + " age " + age + " exists: the metadata read was stale", tx.getId());
    }
    String h = hash(prev, account, age, balance, delta, rid);
    tx.insert(
        Insert.newBuilder()
            .namespace(ns)
            .table(ASSET)
            .partitionKey(Key.ofText("id", account))
            .clusteringKey(Key.ofInt("age", age))
            .bigIntValue("balance", balance)
            .bigIntValue("delta", delta)
            .textValue("rid", rid)
            .textValue("prev_hash", prev)
            .textValue("hash", h)
            .build());
    tx.upsert(
        Upsert.newBuilder()
            .namespace(ns)
            .table(ASSET_METADATA)
            .partitionKey(Key.ofText("id", account))
            .intValue("latest_age", age)
            .bigIntValue("balance", balance)
            .textValue("hash", h)
            .build());
    return h;
  }

  private void record(
      DistributedTransaction tx, String rid, String kind, String src, String dst, long amount,
      JsonObject result, String proof, String node) throws TransactionException {
    tx.insert(
        Insert.newBuilder()
            .namespace(nsPostgres)
            .table(REQUEST)
            .partitionKey(Key.ofText("rid", rid))
            .textValue("kind", kind)
            .textValue("src", src)
            .textValue("dst", dst)
            .bigIntValue("amount", amount)
            .textValue("result", result.toString())
            .textValue("proof", proof)
            .textValue("node", node)
            .build());
  }

  private static JsonObject duplicate(Result r) {
    JsonObject out = new JsonObject();
    out.addProperty("status", "duplicate");
    out.add("hashes", com.google.gson.JsonParser.parseString(r.getText("result")));
    return out;
  }

  JsonObject create(String rid, String account, long amount, String proof, String node)
      throws Rejected, Unknown, InterruptedException {
    namespaceOf(account);
    return inTransaction(
        tx -> {
          Optional<Result> seen = existing(tx, rid);
          if (seen.isPresent()) {
            return duplicate(seen.get());
          }
          if (metadata(tx, account).isPresent()) {
            throw new Rejected("account " + account + " exists");
          }
          JsonObject hashes = new JsonObject();
          hashes.addProperty(account, append(tx, account, 0, amount, amount, "", rid));
          record(tx, rid, "create", "", account, amount, hashes, proof, node);
          JsonObject out = new JsonObject();
          out.addProperty("status", "committed");
          out.add("hashes", hashes);
          return out;
        });
  }

  JsonObject transfer(
      String rid, String src, String dst, long amount, String proof, String node)
      throws Rejected, Unknown, InterruptedException {
    namespaceOf(src);
    namespaceOf(dst);
    if (src.equals(dst)) {
      throw new Rejected("a transfer needs two different accounts");
    }
    if (amount <= 0) {
      throw new Rejected("amount must be positive");
    }
    return inTransaction(
        tx -> {
          Optional<Result> seen = existing(tx, rid);
          if (seen.isPresent()) {
            return duplicate(seen.get());
          }
          JsonObject hashes = new JsonObject();
          TreeMap<String, Long> deltas = new TreeMap<>(); // a fixed order of access
          deltas.put(src, -amount);
          deltas.put(dst, amount);
          for (var e : deltas.entrySet()) {
            Result md =
                metadata(tx, e.getKey())
                    .orElseThrow(() -> new Rejected("account " + e.getKey() + " does not exist"));
            int age = md.getInt("latest_age") + 1;
            long balance = md.getBigInt("balance") + e.getValue();
            hashes.addProperty(
                e.getKey(),
                append(tx, e.getKey(), age, balance, e.getValue(), md.getText("hash"), rid));
          }
          record(tx, rid, "transfer", src, dst, amount, hashes, proof, node);
          JsonObject out = new JsonObject();
          out.addProperty("status", "committed");
          out.add("hashes", hashes);
          return out;
        });
  }

  JsonObject read(String account) throws Rejected, Unknown, InterruptedException {
    return inTransaction(
        tx -> {
          Result md =
              metadata(tx, account)
                  .orElseThrow(() -> new Rejected("account " + account + " does not exist"));
          JsonObject out = new JsonObject();
          out.addProperty("account", account);
          out.addProperty("balance", md.getBigInt("balance"));
          out.addProperty("age", md.getInt("latest_age"));
          out.addProperty("hash", md.getText("hash"));
          return out;
        });
  }

  // --- the check: everything, read through ScalarDB --------------------------------------------

  /**
   * Every asset row, every asset's metadata and every request, read in ONE transaction, so
   * that ScalarDB resolves prepared records (lazy recovery) and the view is one snapshot.
   */
  JsonObject dump() throws Rejected, Unknown, InterruptedException {
    return inTransaction(
        tx -> {
          JsonObject out = new JsonObject();
          JsonObject accounts = new JsonObject();
          for (String ns : List.of(nsMysql, nsPostgres)) {
            for (Result r : scanAll(tx, ns, ASSET_METADATA)) {
              JsonObject a = new JsonObject();
              a.addProperty("namespace", ns);
              a.addProperty("latest_age", r.getInt("latest_age"));
              a.addProperty("balance", r.getBigInt("balance"));
              a.addProperty("hash", r.getText("hash"));
              a.add("chain", new JsonArray());
              accounts.add(r.getText("id"), a);
            }
            List<Result> rows = new ArrayList<>(scanAll(tx, ns, ASSET));
            rows.sort(
                (x, y) -> {
                  int c = x.getText("id").compareTo(y.getText("id"));
                  return c != 0 ? c : Integer.compare(x.getInt("age"), y.getInt("age"));
                });
            for (Result r : rows) {
              String id = r.getText("id");
              if (!accounts.has(id)) {
                JsonObject a = new JsonObject();
                a.addProperty("namespace", ns);
                a.add("chain", new JsonArray()); // rows without metadata: the checker says so
                accounts.add(id, a);
              }
              JsonObject row = new JsonObject();
              row.addProperty("age", r.getInt("age"));
              row.addProperty("balance", r.getBigInt("balance"));
              row.addProperty("delta", r.getBigInt("delta"));
              row.addProperty("rid", r.getText("rid"));
              row.addProperty("prev_hash", r.getText("prev_hash"));
              row.addProperty("hash", r.getText("hash"));
              accounts.getAsJsonObject(id).getAsJsonArray("chain").add(row);
            }
          }
          JsonObject requests = new JsonObject();
          for (Result r : scanAll(tx, nsPostgres, REQUEST)) {
            JsonObject q = new JsonObject();
            q.addProperty("kind", r.getText("kind"));
            q.addProperty("src", r.getText("src"));
            q.addProperty("dst", r.getText("dst"));
            q.addProperty("amount", r.getBigInt("amount"));
            q.add("result", com.google.gson.JsonParser.parseString(r.getText("result")));
            String proof = r.getText("proof");
            q.add(
                "proof",
                proof == null || proof.isEmpty()
                    ? com.google.gson.JsonNull.INSTANCE
                    : com.google.gson.JsonParser.parseString(proof));
            q.addProperty("node", r.getText("node"));
            requests.add(r.getText("rid"), q);
          }
          out.add("accounts", accounts);
          out.add("requests", requests);
          return out;
        },
        1,
        120_000);
  }

  private static List<Result> scanAll(DistributedTransaction tx, String ns, String table)
      throws TransactionException {
    return tx.scan(Scan.newBuilder().namespace(ns).table(table).all().build());
  }
}
