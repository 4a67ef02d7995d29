package pausepoint.smallbank;

import com.fasterxml.jackson.databind.JsonNode;
import com.scalar.dl.ledger.contract.JacksonBasedContract;
import com.scalar.dl.ledger.exception.ContractContextException;
import com.scalar.dl.ledger.statemachine.Ledger;

/**
 * Opens an account. Argument {"account_id": "a1", "balance": 1000}; the account is one asset
 * whose data is {"balance": n}. Opening an existing account is refused, so the total of all
 * balances changes only when an account is opened.
 *
 * <p>A ScalarDL contract is registered as ONE class file: no helper classes, no inner classes.
 */
public class CreateAccount extends JacksonBasedContract {
  @Override
  public JsonNode invoke(Ledger<JsonNode> ledger, JsonNode argument, JsonNode properties) {
    JsonNode id = argument == null ? null : argument.get("account_id");
    JsonNode balance = argument == null ? null : argument.get("balance");
    if (id == null || !id.isTextual() || id.asText().isEmpty()) {
      throw new ContractContextException("argument needs a non-empty string 'account_id'");
    }
    if (balance == null || !balance.canConvertToLong() || balance.asLong() < 0) {
      throw new ContractContextException("argument needs a non-negative integer 'balance'");
    }
    if (ledger.get(id.asText()).isPresent()) {
      throw new ContractContextException("account " + id.asText() + " already exists");
    }
    ledger.put(id.asText(), getObjectMapper().createObjectNode().put("balance", balance.asLong()));
    return getObjectMapper()
        .createObjectNode()
        .put("account_id", id.asText())
        .put("balance", balance.asLong());
  }
}
