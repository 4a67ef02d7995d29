package pausepoint.node;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import io.grpc.Server;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Reader;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * A ScalarDB-backed node with a Ledger's pause gate, for tests and the demo (never shipped).
 *
 * <pre>
 *   Node serve  CONFIG   admin gRPC (scalar-admin's rpc.Admin) + the request port; prints READY
 *   Node schema CONFIG   create the coordinator tables, namespaces and tables
 *   Node check  CONFIG   read everything through one ScalarDB transaction; JSON on stdout
 * </pre>
 *
 * CONFIG is a properties file (mode 0600: it holds the database passwords) with ScalarDB's
 * settings and the node's own under {@code pausepoint.node.}: {@code name}, {@code release}
 * (3.13 or 3.14), {@code admin_port}, {@code request_port}, {@code namespace.mysql},
 * {@code namespace.postgres}.
 *
 * <p>The request port speaks one JSON object per line each way. Requests: {@code {"op":"ping"}}
 * (not gated), {@code {"op":"create","rid","account","amount"}}, {@code {"op":"transfer","rid",
 * "src","dst","amount"}}, {@code {"op":"read","account"}}, {@code {"op":"hold","ms"}} (a request
 * that stays in flight for ms: the slow-drain fault of the pause tests); create and transfer may carry
 * {@code "proof"} (an auditor stores the ledger's result it was given). Answers: {@code
 * {"ok":true,...}} or {@code {"ok":false,"error":"rejected|unknown|internal","message":...}}.
 * Every request but ping passes the gate: held while the node is paused.
 */
public final class Node {
  private static final Object LOG_LOCK = new Object();

  static void log(String fmt, Object... args) {
    synchronized (LOG_LOCK) {
      System.err.println(Instant.now() + " " + String.format(fmt, args));
      System.err.flush();
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 2) {
      System.err.println("usage: Node serve|schema|check CONFIG");
      System.exit(2);
    }
    Properties props = load(Path.of(args[1]));
    switch (args[0]) {
      case "serve" -> serve(props);
      case "schema" -> {
        try (Bank bank = new Bank(props)) {
          bank.createSchema();
        }
        System.out.println("{\"ok\": true}");
      }
      case "check" -> {
        JsonObject out;
        try (Bank bank = new Bank(props)) {
          out = bank.dump();
        }
        System.out.println(out);
      }
      default -> {
        System.err.println("unknown command " + args[0] + ": use serve, schema or check");
        System.exit(2);
      }
    }
    System.out.flush();
    // ScalarDB and gRPC leave non-daemon threads behind; the work is done.
    System.exit(0);
  }

  static Properties load(Path path) throws IOException {
    Properties props = new Properties();
    try (Reader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
      props.load(r);
    }
    return props;
  }

  private static void serve(Properties props) throws Exception {
    String name = props.getProperty("pausepoint.node.name", "node");
    Gate gate = new Gate(Gate.Release.parse(props.getProperty("pausepoint.node.release", "3.14")));
    int adminPort = Integer.parseInt(Bank.required(props, "pausepoint.node.admin_port"));
    int requestPort = Integer.parseInt(Bank.required(props, "pausepoint.node.request_port"));
    InetAddress loopback = InetAddress.getByName("127.0.0.1");
    Bank bank = new Bank(props);
    Server admin =
        NettyServerBuilder.forAddress(new InetSocketAddress(loopback, adminPort))
            .addService(new AdminService(gate))
            .build()
            .start();
    ServerSocket listener = new ServerSocket();
    listener.setReuseAddress(true);
    listener.bind(new InetSocketAddress(loopback, requestPort), 256);
    ExecutorService workers = Executors.newCachedThreadPool();
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  try {
                    listener.close();
                  } catch (IOException ignored) {
                    // closing anyway
                  }
                  admin.shutdownNow();
                  workers.shutdownNow();
                  try {
                    admin.awaitTermination(5, TimeUnit.SECONDS);
                  } catch (InterruptedException ignored) {
                    Thread.currentThread().interrupt();
                  }
                  bank.close();
                }));
    System.out.println(
        "READY name=" + name + " release=" + gate.release().label + " admin=" + adminPort
            + " request=" + requestPort);
    System.out.flush();
    log("%s serving: admin 127.0.0.1:%d, requests 127.0.0.1:%d", name, adminPort, requestPort);
    while (!listener.isClosed()) {
      Socket s;
      try {
        s = listener.accept();
      } catch (IOException e) {
        break;
      }
      workers.execute(() -> session(s, bank, gate, name));
    }
  }

  /** One client connection: a request per line, an answer per line, in order. */
  private static void session(Socket s, Bank bank, Gate gate, String name) {
    try (s;
        BufferedReader in =
            new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8));
        BufferedWriter out =
            new BufferedWriter(
                new OutputStreamWriter(s.getOutputStream(), StandardCharsets.UTF_8))) {
      s.setTcpNoDelay(true);
      String line;
      while ((line = in.readLine()) != null) {
        JsonObject answer = handle(line, bank, gate, name);
        out.write(answer.toString());
        out.write('\n');
        out.flush();
      }
    } catch (IOException e) {
      // the client went away
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static JsonObject handle(String line, Bank bank, Gate gate, String name)
      throws InterruptedException {
    JsonObject req;
    String op;
    try {
      req = JsonParser.parseString(line).getAsJsonObject();
      op = req.get("op").getAsString();
    } catch (RuntimeException e) {
      return error("rejected", "not a JSON request with an op: " + e.getMessage());
    }
    if (op.equals("ping")) {
      JsonObject out = new JsonObject();
      out.addProperty("ok", true);
      out.addProperty("node", name);
      out.addProperty("paused", gate.paused());
      out.addProperty("inflight", gate.inflight());
      out.addProperty("held", gate.held());
      return out;
    }
    gate.enter(); // held here while the node is paused
    try {
      String proof = req.has("proof") ? req.get("proof").toString() : "";
      JsonObject out =
          switch (op) {
            case "create" -> bank.create(
                str(req, "rid"), str(req, "account"), req.get("amount").getAsLong(), proof, name);
            case "transfer" -> bank.transfer(
                str(req, "rid"),
                str(req, "src"),
                str(req, "dst"),
                req.get("amount").getAsLong(),
                proof,
                name);
            case "read" -> bank.read(str(req, "account"));
            case "hold" -> hold(req.get("ms").getAsLong());
            default -> throw new Bank.Rejected("unknown op '" + op + "'");
          };
      out.addProperty("ok", true);
      out.addProperty("node", name);
      return out;
    } catch (Bank.Rejected e) {
      return error("rejected", e.getMessage());
    } catch (Bank.Unknown e) {
      log("request %s: %s", line, e.getMessage());
      return error("unknown", e.getMessage());
    } catch (RuntimeException e) {
      log("request %s failed: %s", line, e);
      return error("internal", String.valueOf(e));
    } finally {
      gate.exit();
    }
  }

  /** The slow-request fault: a request that stays in flight for {@code ms} (drain tests). */
  private static JsonObject hold(long ms) throws InterruptedException {
    Thread.sleep(ms);
    return new JsonObject();
  }

  private static String str(JsonObject req, String key) throws Bank.Rejected {
    if (!req.has(key) || req.get(key).isJsonNull()) {
      throw new Bank.Rejected("field '" + key + "' is missing");
    }
    return req.get(key).getAsString();
  }

  private static JsonObject error(String kind, String message) {
    JsonObject out = new JsonObject();
    out.addProperty("ok", false);
    out.addProperty("error", kind);
    out.addProperty("message", message);
    return out;
  }

  private Node() {}
}
