package pausepoint.harness;

import com.google.protobuf.Any;
import com.google.protobuf.Empty;
import com.google.rpc.ErrorInfo;
import com.scalar.admin.rpc.AdminGrpc;
import com.scalar.admin.rpc.CheckPausedResponse;
import com.scalar.admin.rpc.PauseRequest;
import io.grpc.Server;
import io.grpc.ServerCredentials;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.TlsServerCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyServerBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;
import java.io.File;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.util.concurrent.TimeUnit;

/**
 * A test-only admin node on scalar-admin's generated {@code AdminGrpc.AdminImplBase}: an echo gate
 * with no application behind it, so that pausepoint's Python client is proven against the real
 * Java server stub (and its status encoding) over plaintext and TLS.
 *
 * <p>The gate follows the Ledger release named by {@code --release} (see FACTS.md section 6):
 * 3.12.3 and 3.13.0 close the gate, treat a zero wait as the 30 s default, reopen the gate on a
 * drain timeout and answer a bare FAILED_PRECONDITION; 3.14.0 serialises pauses, refuses a
 * non-positive wait with INVALID_ARGUMENT and attaches an ErrorInfo to a failed pause. There are
 * no requests to drain; {@code --drain-ms N} stands for one that stays in flight N ms after each
 * waiting pause starts.
 *
 * <p>Arguments: {@code --port N} (0: any free port), {@code --release R}, {@code --drain-ms N},
 * {@code --cert PEM --key PKCS8-PEM} (TLS). Binds 127.0.0.1, prints {@code LISTENING <port>}, and
 * stops when its standard input closes (so it never outlives the test that started it).
 */
public final class EchoAdminServer extends AdminGrpc.AdminImplBase {
  private static final long DEFAULT_WAIT_MS = 30_000;
  private static final String DOMAIN = "com.scalar.dl.admin";

  private final boolean release314;
  private final long drainMs;
  private boolean open = true; // guarded by this
  private boolean pauseInProgress; // guarded by this (3.14.0 only)

  private EchoAdminServer(String release, long drainMs) {
    switch (release) {
      case "3.12.3":
      case "3.13.0":
        release314 = false;
        break;
      case "3.14.0":
        release314 = true;
        break;
      default:
        throw new IllegalArgumentException("unknown release " + release);
    }
    this.drainMs = drainMs;
  }

  @Override
  public void pause(PauseRequest request, StreamObserver<Empty> response) {
    StatusRuntimeException failure = release314 ? pause314(request) : pauseLegacy(request);
    if (failure != null) {
      response.onError(failure);
      return;
    }
    response.onNext(Empty.getDefaultInstance());
    response.onCompleted();
  }

  /** 3.12.3 / 3.13.0: no serialisation, no "still paused", a bare status. */
  private synchronized StatusRuntimeException pauseLegacy(PauseRequest request) {
    open = false;
    if (!request.getWaitOutstanding()) {
      return null;
    }
    long waitMs =
        request.getMaxPauseWaitTime() != 0 ? request.getMaxPauseWaitTime() : DEFAULT_WAIT_MS;
    if (!awaitDrained(System.nanoTime(), waitMs)) {
      open = true;
      notifyAll();
      return Status.FAILED_PRECONDITION.asRuntimeException(); // no description, no detail
    }
    return null;
  }

  /** 3.14.0: serialised pauses, each failure with an ErrorInfo naming the outcome. */
  private synchronized StatusRuntimeException pause314(PauseRequest request) {
    if (!request.getWaitOutstanding()) {
      if (pauseInProgress) {
        return rich(Status.ABORTED, "PAUSE_IN_PROGRESS", "another pause is in progress");
      }
      open = false;
      return null;
    }
    long waitMs = DEFAULT_WAIT_MS;
    if (request.hasMaxPauseWaitTime()) {
      waitMs = request.getMaxPauseWaitTime();
      if (waitMs <= 0) {
        return Status.INVALID_ARGUMENT.withDescription(
                "max_pause_wait_time must be greater than 0 ms, but was " + waitMs + " ms")
            .asRuntimeException();
      }
    }
    long start = System.nanoTime();
    long deadline = start + TimeUnit.MILLISECONDS.toNanos(waitMs);
    while (pauseInProgress) {
      long left = deadline - System.nanoTime();
      if (left <= 0) {
        return rich(Status.ABORTED, "PAUSE_IN_PROGRESS", "another pause is in progress");
      }
      timedWait(left);
    }
    pauseInProgress = true;
    try {
      boolean closedByThisCall = open;
      open = false;
      boolean drained = awaitDrained(start, waitMs);
      if (open) {
        return rich(Status.ABORTED, "GATE_OPEN", "a concurrent unpause reopened the gate");
      }
      if (drained) {
        return null;
      }
      if (closedByThisCall) {
        open = true;
        return rich(Status.FAILED_PRECONDITION, "TIMED_OUT", "not drained; gate reopened");
      }
      return rich(
          Status.FAILED_PRECONDITION, "TIMED_OUT_STILL_PAUSED", "not drained; gate stays closed");
    } finally {
      pauseInProgress = false;
      notifyAll();
    }
  }

  /** Waits (holding the monitor, released while waiting) for the stand-in request to finish. */
  private boolean awaitDrained(long startNanos, long waitMs) {
    long drainedAt = startNanos + TimeUnit.MILLISECONDS.toNanos(drainMs);
    long deadline = startNanos + TimeUnit.MILLISECONDS.toNanos(waitMs);
    while (!open && System.nanoTime() < drainedAt) {
      long left = Math.min(deadline, drainedAt) - System.nanoTime();
      if (System.nanoTime() >= deadline || left <= 0) {
        break;
      }
      timedWait(left);
    }
    return System.nanoTime() >= drainedAt;
  }

  private void timedWait(long nanos) {
    try {
      TimeUnit.NANOSECONDS.timedWait(this, nanos);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static StatusRuntimeException rich(Status status, String reason, String message) {
    com.google.rpc.Status proto =
        com.google.rpc.Status.newBuilder()
            .setCode(status.getCode().value())
            .setMessage(message)
            .addDetails(
                Any.pack(ErrorInfo.newBuilder().setReason(reason).setDomain(DOMAIN).build()))
            .build();
    // The detail travels in the trailers (grpc-status-details-bin), as the Ledger sends it.
    return StatusProto.toStatusRuntimeException(proto);
  }

  @Override
  public void unpause(Empty request, StreamObserver<Empty> response) {
    synchronized (this) {
      open = true;
      notifyAll();
    }
    response.onNext(Empty.getDefaultInstance());
    response.onCompleted();
  }

  @Override
  public void checkPaused(Empty request, StreamObserver<CheckPausedResponse> response) {
    boolean paused;
    synchronized (this) {
      paused = !open;
    }
    response.onNext(CheckPausedResponse.newBuilder().setPaused(paused).build());
    response.onCompleted();
  }

  public static void main(String[] args) throws Exception {
    int port = 0;
    String release = "3.14.0";
    long drainMs = 0;
    String cert = null;
    String key = null;
    for (int i = 0; i < args.length; i += 2) {
      String value = args[i + 1];
      switch (args[i]) {
        case "--port":
          port = Integer.parseInt(value);
          break;
        case "--release":
          release = value;
          break;
        case "--drain-ms":
          drainMs = Long.parseLong(value);
          break;
        case "--cert":
          cert = value;
          break;
        case "--key":
          key = value;
          break;
        default:
          throw new IllegalArgumentException("unknown option " + args[i]);
      }
    }
    InetSocketAddress address = new InetSocketAddress("127.0.0.1", port);
    NettyServerBuilder builder;
    if (cert != null) {
      ServerCredentials creds = TlsServerCredentials.create(new File(cert), new File(key));
      builder = NettyServerBuilder.forAddress(address, creds);
    } else {
      builder = NettyServerBuilder.forAddress(address);
    }
    Server server = builder.addService(new EchoAdminServer(release, drainMs)).build().start();
    System.out.println("LISTENING " + server.getPort());
    System.out.flush();
    InputStream in = System.in;
    while (in.read() >= 0) {
      // the parent keeps standard input open for as long as this node is wanted
    }
    server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
