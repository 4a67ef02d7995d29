package com.scalar.dl.ledger.exception;

/**
 * COMPILE-ONLY stand-in for ScalarDL's LedgerException (in scalardl-common), the superclass of
 * the contract API's ContractContextException. scripts/fetch-scalardl.sh puts it on the javac
 * class path only when scalardl-common is not among the fetched jars; it is never packaged or put
 * on a runtime class path, where the Ledger's own class is used. The contracts only need to know
 * that the exception they throw is a RuntimeException.
 */
public class LedgerException extends RuntimeException {
  private static final long serialVersionUID = 1L;
}
