package pausepoint.smallbank;

import com.fasterxml.jackson.databind.JsonNode;
import com.scalar.dl.ledger.contract.JacksonBasedContract;
import com.scalar.dl.ledger.exception.ContractContextException;
import com.scalar.dl.ledger.statemachine.Asset;
import com.scalar.dl.ledger.statemachine.Ledger;
import java.util.Optional;

/**
 * Reads an account. Argument {"account_id": "a1"}; returns {"account_id", "balance", "age"} where
 * age is the asset's latest age (one per change since the account was opened).
 *
 * <p>A ScalarDL contract is registered as ONE class file: no helper classes, no inner classes.
 */
public class Balance extends JacksonBasedContract {
  @Override
  public JsonNode invoke(Ledger<JsonNode> ledger, JsonNode argument, JsonNode properties) {
    JsonNode id = argument == null ? null : argument.get("account_id");
    if (id == null || !id.isTextual() || id.asText().isEmpty()) {
      throw new ContractContextException("argument needs a non-empty string 'account_id'");
    }
    Optional<Asset<JsonNode>> asset = ledger.get(id.asText());
    if (!asset.isPresent()) {
      throw new ContractContextException("account " + id.asText() + " does not exist");
    }
    return getObjectMapper()
        .createObjectNode()
        .put("account_id", id.asText())
        .put("balance", asset.get().data().get("balance").asLong())
        .put("age", asset.get().age());
  }
}
