"""The Cosmos DB store's site-file model and its locations (no Azure calls)."""

from __future__ import annotations

from pausepoint.stores.cosmos.config import CosmosConfig
from pausepoint.stores.registry import locations

SUB = "00000000-0000-0000-0000-0000000000aa"


def cfg(**over) -> CosmosConfig:
    return CosmosConfig.model_validate(
        {
            "name": "c",
            "subscription_id": SUB,
            "resource_group": "rg",
            "account": "scalardb-prod",
            "location": "westus2",
            "databases": ["mbank", "coordinator"],
            "credentials": {
                "source": "service_principal",
                "tenant_id": "t",
                "client_id": "11111111-2222-3333-4444-555555555555",
                "client_secret": {"env": "X"},
            },
            **over,
        }
    )


def test_retarget_keeps_nested_credentials_valid() -> None:
    """A restore target's overrides on a store with credentials: the credentials re-validate
    from what the site file gave (their dump's unset fields would read as given and fail)."""
    target = cfg().retarget({"restore_as": "scalardb-copy"})
    assert isinstance(target, CosmosConfig)
    assert target.restore_as == "scalardb-copy"
    assert target.credentials == cfg().credentials


def test_a_restore_into_the_same_account_is_in_place_and_a_new_one_is_not() -> None:
    live = locations(cfg(), as_target=False)
    same = locations(cfg(restore_as="scalardb-prod"), as_target=True)
    other = locations(cfg(restore_as="scalardb-copy"), as_target=True)
    assert same == live and not (other & live)
    assert {str(x) for x in other} == {"scalardb-copy/mbank", "scalardb-copy/coordinator"}
