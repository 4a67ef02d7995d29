package pausepoint.node;

/**
 * The front gate of one node, with the pause semantics of a ScalarDL Ledger release.
 *
 * <p>Requests call {@link #enter()} on arrival (held, not rejected, while the gate is closed) and
 * {@link #exit()} when done. {@link #pause} closes the gate and, with {@code waitOutstanding},
 * waits for the requests in flight to finish within the request's maximum wait.
 *
 * <ul>
 *   <li>{@link Release#R3_13} (3.12.3 / 3.13.0): pauses are not serialised; a maximum wait that
 *       is unset or not positive means the 30 s default; a drain timeout reopens the gate and is
 *       reported as a bare FAILED_PRECONDITION; a second pause on a closed gate succeeds.
 *   <li>{@link Release#R3_14} (3.14.0): one pause at a time (a waiting pause waits for one in
 *       progress within its own limit, then PAUSE_IN_PROGRESS); a non-positive maximum wait with
 *       {@code waitOutstanding} is INVALID_ARGUMENT; a drain timeout reopens a gate this call
 *       closed (TIMED_OUT) and leaves one an earlier pause closed (TIMED_OUT_STILL_PAUSED); an
 *       unpause during a drain ends that pause with GATE_OPEN.
 * </ul>
 *
 * Unpause always opens the gate at once, also during a drain.
 */
final class Gate {
  static final long DEFAULT_MAX_WAIT_MS = 30_000;

  enum Release {
    R3_13("3.13"),
    R3_14("3.14");

    final String label;

    Release(String label) {
      this.label = label;
    }

    static Release parse(String s) {
      for (Release r : values()) {
        if (r.label.equals(s)) {
          return r;
        }
      }
      throw new IllegalArgumentException("unknown release '" + s + "': use 3.13 or 3.14");
    }
  }

  enum Outcome {
    PAUSED,
    TIMED_OUT,
    TIMED_OUT_STILL_PAUSED,
    GATE_OPEN,
    PAUSE_IN_PROGRESS,
    INVALID_ARGUMENT
  }

  private final Release release;
  private boolean open = true;
  private int inflight;
  private int held;
  private boolean pausing;
  private long opens; // counts unpauses: a drain sees whether one happened meanwhile

  Gate(Release release) {
    this.release = release;
  }

  Release release() {
    return release;
  }

  synchronized void enter() throws InterruptedException {
    held++;
    try {
      while (!open) {
        wait();
      }
    } finally {
      held--;
    }
    inflight++;
  }

  synchronized void exit() {
    inflight = Math.max(0, inflight - 1);
    notifyAll();
  }

  synchronized void unpause() {
    open = true;
    opens++;
    notifyAll();
  }

  synchronized boolean paused() {
    return !open;
  }

  synchronized int inflight() {
    return inflight;
  }

  synchronized int held() {
    return held;
  }

  /** {@code maxWaitMs} null: the field was not set in the request. */
  Outcome pause(boolean waitOutstanding, Long maxWaitMs) throws InterruptedException {
    return release == Release.R3_13
        ? pause313(waitOutstanding, maxWaitMs)
        : pause314(waitOutstanding, maxWaitMs);
  }

  private synchronized Outcome pause313(boolean waitOutstanding, Long maxWaitMs)
      throws InterruptedException {
    open = false;
    if (!waitOutstanding) {
      return Outcome.PAUSED;
    }
    long waitMs = maxWaitMs == null || maxWaitMs <= 0 ? DEFAULT_MAX_WAIT_MS : maxWaitMs;
    long deadline = System.nanoTime() + waitMs * 1_000_000L;
    while (inflight > 0) {
      long remaining = deadline - System.nanoTime();
      if (remaining <= 0) {
        open = true;
        opens++;
        notifyAll();
        return Outcome.TIMED_OUT;
      }
      waitNanos(remaining);
    }
    return Outcome.PAUSED;
  }

  private synchronized Outcome pause314(boolean waitOutstanding, Long maxWaitMs)
      throws InterruptedException {
    if (waitOutstanding && maxWaitMs != null && maxWaitMs <= 0) {
      return Outcome.INVALID_ARGUMENT;
    }
    if (!waitOutstanding) {
      if (pausing) {
        return Outcome.PAUSE_IN_PROGRESS;
      }
      open = false;
      return Outcome.PAUSED;
    }
    long waitMs = maxWaitMs == null ? DEFAULT_MAX_WAIT_MS : maxWaitMs;
    long deadline = System.nanoTime() + waitMs * 1_000_000L;
    while (pausing) {
      long remaining = deadline - System.nanoTime();
      if (remaining <= 0) {
        return Outcome.PAUSE_IN_PROGRESS;
      }
      waitNanos(remaining);
    }
    pausing = true;
    try {
      boolean closedByThisCall = open;
      open = false;
      long opensBefore = opens;
      while (true) {
        if (opens != opensBefore) {
          return Outcome.GATE_OPEN; // a concurrent unpause won
        }
        if (inflight == 0) {
          return Outcome.PAUSED;
        }
        long remaining = deadline - System.nanoTime();
        if (remaining <= 0) {
          break;
        }
        waitNanos(remaining);
      }
      if (closedByThisCall) {
        open = true;
        opens++;
        return Outcome.TIMED_OUT;
      }
      return Outcome.TIMED_OUT_STILL_PAUSED;
    } finally {
      pausing = false;
      notifyAll();
    }
  }

  private void waitNanos(long nanos) throws InterruptedException {
    long ms = Math.max(1, nanos / 1_000_000L);
    wait(ms);
  }
}
