package pausepoint.node;

import com.google.protobuf.Any;
import com.google.protobuf.Empty;
import com.google.rpc.Code;
import com.google.rpc.ErrorInfo;
import com.scalar.admin.rpc.AdminGrpc;
import com.scalar.admin.rpc.CheckPausedResponse;
import com.scalar.admin.rpc.PauseRequest;
import io.grpc.Status;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.StreamObserver;

/**
 * scalar-admin's own generated service base ({@code AdminGrpc.AdminImplBase} of scalar-admin
 * 2.2.1) in front of the node's {@link Gate}: how a failed pause is reported depends on the
 * release the node plays (3.13: a bare status; 3.14: a {@code google.rpc.ErrorInfo} in domain
 * {@code com.scalar.dl.admin}).
 */
final class AdminService extends AdminGrpc.AdminImplBase {
  static final String ERROR_DOMAIN = "com.scalar.dl.admin";

  private final Gate gate;

  AdminService(Gate gate) {
    this.gate = gate;
  }

  @Override
  public void pause(PauseRequest request, StreamObserver<Empty> out) {
    Long maxWait = request.hasMaxPauseWaitTime() ? request.getMaxPauseWaitTime() : null;
    Gate.Outcome outcome;
    try {
      outcome = gate.pause(request.getWaitOutstanding(), maxWait);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      out.onError(Status.CANCELLED.withDescription("pause interrupted").asRuntimeException());
      return;
    }
    Node.log(
        "pause wait_outstanding=%s max_pause_wait_time=%s -> %s",
        request.getWaitOutstanding(), maxWait, outcome);
    switch (outcome) {
      case PAUSED -> {
        out.onNext(Empty.getDefaultInstance());
        out.onCompleted();
      }
      case INVALID_ARGUMENT -> out.onError(
          Status.INVALID_ARGUMENT
              .withDescription(
                  "max_pause_wait_time must be positive when wait_outstanding is set, got "
                      + maxWait)
              .asRuntimeException());
      case TIMED_OUT -> fail(
          out,
          Code.FAILED_PRECONDITION,
          "TIMED_OUT",
          "in-flight requests did not finish within the maximum pause wait; the gate was"
              + " reopened");
      case TIMED_OUT_STILL_PAUSED -> fail(
          out,
          Code.FAILED_PRECONDITION,
          "TIMED_OUT_STILL_PAUSED",
          "in-flight requests did not finish within the maximum pause wait; the gate stays"
              + " closed under an earlier pause");
      case GATE_OPEN -> fail(
          out,
          Code.ABORTED,
          "GATE_OPEN",
          "pause not completed: the gate was reopened by a concurrent unpause");
      case PAUSE_IN_PROGRESS -> fail(
          out, Code.ABORTED, "PAUSE_IN_PROGRESS", "pause not started: another pause is in progress");
      default -> throw new IllegalStateException(outcome.name());
    }
  }

  private void fail(StreamObserver<Empty> out, Code code, String reason, String message) {
    if (gate.release() == Gate.Release.R3_13) {
      // 3.12.3/3.13.0 answer with the status alone.
      out.onError(Status.fromCodeValue(code.getNumber()).withDescription(message).asRuntimeException());
      return;
    }
    ErrorInfo info = ErrorInfo.newBuilder().setReason(reason).setDomain(ERROR_DOMAIN).build();
    com.google.rpc.Status status =
        com.google.rpc.Status.newBuilder()
            .setCode(code.getNumber())
            .setMessage(message)
            .addDetails(Any.pack(info))
            .build();
    out.onError(StatusProto.toStatusRuntimeException(status));
  }

  @Override
  public void unpause(Empty request, StreamObserver<Empty> out) {
    gate.unpause();
    Node.log("unpause");
    out.onNext(Empty.getDefaultInstance());
    out.onCompleted();
  }

  @Override
  public void checkPaused(Empty request, StreamObserver<CheckPausedResponse> out) {
    out.onNext(CheckPausedResponse.newBuilder().setPaused(gate.paused()).build());
    out.onCompleted();
  }
}
