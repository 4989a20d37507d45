"""AdaMoE: null experts that compute nothing, so each token uses a variable number of real experts."""

from leanlm.moe.adamoe.router import AdaMoERouters, NullExpertRouter, null_expert_routers
from leanlm.moe.adamoe.routing import adamoe_routing, balance_loss, real_experts_per_token

__all__ = [
    "AdaMoERouters",
    "NullExpertRouter",
    "adamoe_routing",
    "balance_loss",
    "null_expert_routers",
    "real_experts_per_token",
]
