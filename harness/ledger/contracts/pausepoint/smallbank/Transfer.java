package pausepoint.smallbank;

import com.fasterxml.jackson.databind.JsonNode;
import com.scalar.dl.ledger.contract.JacksonBasedContract;
import com.scalar.dl.ledger.exception.ContractContextException;
import com.scalar.dl.ledger.statemachine.Asset;
import com.scalar.dl.ledger.statemachine.Ledger;
import java.util.Optional;

/**
 * Moves money between two accounts. Argument {"from": "a1", "to": "a2", "amount": 10}. Both
 * assets get a new age in the same Ledger transaction, so a consistent copy of the databases
 * shows the transfer on both accounts or on neither, and the total of all balances is invariant.
 *
 * <p>A ScalarDL contract is registered as ONE class file: no helper classes, no inner classes.
 */
public class Transfer extends JacksonBasedContract {
  @Override
  public JsonNode invoke(Ledger<JsonNode> ledger, JsonNode argument, JsonNode properties) {
    String from = text(argument, "from");
    String to = text(argument, "to");
    JsonNode amountNode = argument.get("amount");
    if (amountNode == null || !amountNode.canConvertToLong() || amountNode.asLong() <= 0) {
      throw new ContractContextException("argument needs a positive integer 'amount'");
    }
    long amount = amountNode.asLong();
    if (from.equals(to)) {
      throw new ContractContextException("'from' and 'to' must be different accounts");
    }
    long fromBalance = balance(ledger.get(from), from);
    long toBalance = balance(ledger.get(to), to);
    if (fromBalance < amount) {
      throw new ContractContextException("insufficient balance in account " + from);
    }
    ledger.put(from, getObjectMapper().createObjectNode().put("balance", fromBalance - amount));
    ledger.put(to, getObjectMapper().createObjectNode().put("balance", toBalance + amount));
    return getObjectMapper()
        .createObjectNode()
        .put("from_balance", fromBalance - amount)
        .put("to_balance", toBalance + amount);
  }

  private static String text(JsonNode argument, String field) {
    JsonNode node = argument == null ? null : argument.get(field);
    if (node == null || !node.isTextual() || node.asText().isEmpty()) {
      throw new ContractContextException("argument needs a non-empty string '" + field + "'");
    }
    return node.asText();
  }

  private static long balance(Optional<Asset<JsonNode>> asset, String id) {
    if (!asset.isPresent()) {
      throw new ContractContextException("account " + id + " does not exist");
    }
    return asset.get().data().get("balance").asLong();
  }
}
