// The cassandra store's resident JMX client: one per node, started before the pause, so that a
// snapshot inside the window is one JMX call on an open connection (a `nodetool` call starts a
// JVM: ~5 s). Uses the JDK's JMX client only, so it runs beside any Cassandra version without
// Cassandra's jars.
//
//   java -cp DIR NodeAgent JMX_HOST JMX_PORT
//
// Protocol: the first line on stdin is "auth" or "auth\tUSER\tPASSWORD" (JMX credentials: on
// stdin, never on a command line or in the node's environment); it answers "ok\t\"ready\"" once
// connected. Then one command per line, words separated by tabs; one answer line per command on
// stdout: "ok\t<json>" or "err\t<message>". stdin closed: the agent exits.
//   ping                          -> "pong"
//   ring                          -> {"live":[..],"unreachable":[..],"joining":[..],"leaving":[..],
//                                     "moving":[..],"tokens":{"token":"endpoint",..},
//                                     "local_tokens":[..],"host_id":"..","mode":"NORMAL",
//                                     "data_dirs":[..],"commitlog":"..","saved_caches":".."}
//   flush     KS                  -> null   (forceKeyspaceFlush)
//   snapshot  TAG KS[,KS..]       -> null   (takeSnapshot with the memtables flushed first)
//   clear     TAG KS[,KS..]       -> null   (clearSnapshot)
//   drain                         -> null
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.management.MBeanServerConnection;
import javax.management.ObjectName;
import javax.management.remote.JMXConnector;
import javax.management.remote.JMXConnectorFactory;
import javax.management.remote.JMXServiceURL;

public final class NodeAgent {
  private static final String SS = "org.apache.cassandra.db:type=StorageService";

  private NodeAgent() {}

  public static void main(String[] args) throws Exception {
    String host = args[0];
    int port = Integer.parseInt(args[1]);
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    JMXServiceURL url =
        new JMXServiceURL("service:jmx:rmi:///jndi/rmi://" + host + ":" + port + "/jmxrmi");
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String auth = in.readLine();
    Map<String, Object> env = new HashMap<>();
    if (auth != null && auth.startsWith("auth\t")) {
      String[] a = auth.split("\t", 3);
      env.put(JMXConnector.CREDENTIALS, new String[] {a[1], a.length > 2 ? a[2] : ""});
    }
    JMXConnector connector;
    try {
      connector = JMXConnectorFactory.connect(url, env);
    } catch (Exception e) {
      out.println("err\tcannot connect to JMX at " + host + ":" + port + ": " + oneLine(e));
      return;
    }
    MBeanServerConnection mbs = connector.getMBeanServerConnection();
    ObjectName ss = new ObjectName(SS);
    out.println("ok\t\"ready\"");
    String line;
    while ((line = in.readLine()) != null) {
      if (line.isEmpty()) {
        continue;
      }
      String[] w = line.split("\t");
      try {
        out.println("ok\t" + run(mbs, ss, w));
      } catch (Exception e) {
        out.println("err\t" + oneLine(e));
      }
    }
    connector.close();
  }

  private static String run(MBeanServerConnection mbs, ObjectName ss, String[] w)
      throws Exception {
    switch (w[0]) {
      case "ping":
        return "\"pong\"";
      case "ring":
        return ring(mbs, ss);
      case "flush":
        mbs.invoke(
            ss,
            "forceKeyspaceFlush",
            new Object[] {w[1], new String[0]},
            new String[] {"java.lang.String", "[Ljava.lang.String;"});
        return "null";
      case "snapshot":
        {
          Map<String, String> options = new HashMap<>();
          options.put("skipFlush", "false");
          mbs.invoke(
              ss,
              "takeSnapshot",
              new Object[] {w[1], options, w[2].split(",")},
              new String[] {"java.lang.String", "java.util.Map", "[Ljava.lang.String;"});
          return "null";
        }
      case "clear":
        mbs.invoke(
            ss,
            "clearSnapshot",
            new Object[] {w[1], w[2].split(",")},
            new String[] {"java.lang.String", "[Ljava.lang.String;"});
        return "null";
      case "drain":
        mbs.invoke(ss, "drain", new Object[0], new String[0]);
        return "null";
      default:
        throw new IllegalArgumentException("unknown command " + w[0]);
    }
  }

  private static String ring(MBeanServerConnection mbs, ObjectName ss) throws Exception {
    String[] lists = {"LiveNodes", "UnreachableNodes", "JoiningNodes", "LeavingNodes", "MovingNodes"};
    String[] keys = {"live", "unreachable", "joining", "leaving", "moving"};
    StringBuilder b = new StringBuilder("{");
    for (int i = 0; i < lists.length; i++) {
      b.append(str(keys[i])).append(':').append(list((List<?>) mbs.getAttribute(ss, lists[i])));
      b.append(',');
    }
    Map<?, ?> tokens = (Map<?, ?>) mbs.getAttribute(ss, "TokenToEndpointMap");
    b.append("\"tokens\":{");
    boolean first = true;
    for (Map.Entry<?, ?> e : tokens.entrySet()) {
      if (!first) {
        b.append(',');
      }
      first = false;
      b.append(str(String.valueOf(e.getKey()))).append(':').append(str(String.valueOf(e.getValue())));
    }
    b.append("},\"local_tokens\":").append(list((List<?>) mbs.getAttribute(ss, "Tokens")));
    b.append(",\"host_id\":").append(str(String.valueOf(mbs.getAttribute(ss, "LocalHostId"))));
    b.append(",\"mode\":").append(str(String.valueOf(mbs.getAttribute(ss, "OperationMode"))));
    b.append(",\"data_dirs\":")
        .append(list(List.of((String[]) mbs.getAttribute(ss, "AllDataFileLocations"))));
    b.append(",\"commitlog\":").append(str(String.valueOf(mbs.getAttribute(ss, "CommitLogLocation"))));
    b.append(",\"saved_caches\":")
        .append(str(String.valueOf(mbs.getAttribute(ss, "SavedCachesLocation"))));
    return b.append('}').toString();
  }

  private static String list(List<?> items) {
    StringBuilder b = new StringBuilder("[");
    for (int i = 0; i < items.size(); i++) {
      if (i > 0) {
        b.append(',');
      }
      b.append(str(String.valueOf(items.get(i))));
    }
    return b.append(']').toString();
  }

  private static String str(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') {
        b.append('\\').append(c);
      } else if (c < 0x20) {
        b.append(String.format("\\u%04x", (int) c));
      } else {
        b.append(c);
      }
    }
    return b.append('"').toString();
  }

  private static String oneLine(Throwable e) {
    Throwable t = e;
    // JMX wraps the server's exception (RuntimeMBeanException, MBeanException, ...): the
    // innermost one says what happened.
    while (t.getCause() != null) {
      t = t.getCause();
    }
    String msg = t.getClass().getSimpleName() + ": " + t.getMessage();
    return msg.replace('\n', ' ').replace('\t', ' ');
  }
}
