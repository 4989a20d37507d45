"""MoE runtime: run transformers MoE blocks with a pluggable routing policy and grouped expert execution.

    with moe_runtime(model, policy=my_policy, recorder=[RoutingRecorder("my-model"), counter]):
        model(**inputs)

Importing this package changes nothing; blocks are rerouted only inside `moe_runtime`.
"""

from leanlm.runtime.moe.adapters import MOE_ADAPTERS, AdapterRegistry, MoeBlockAdapter
from leanlm.runtime.moe.execute import ExpertGroups, group_by_expert, moe_block_forward, run_routed_experts
from leanlm.runtime.moe.flops import (
    ExpertFlopsCounter,
    ExpertFlopsReport,
    LayerFlops,
    expert_flops_ratio,
    routed_expert_flops,
    router_flops,
    shared_expert_flops,
)
from leanlm.runtime.moe.patch import MoeLayer, find_moe_layers, moe_runtime, stock_policy
from leanlm.runtime.moe.routing import (
    NULL_EXPERT,
    MoeLayerSpec,
    Routing,
    RoutingObserver,
    RoutingPolicy,
    softmax_top_k,
    top_k_softmax,
)
from leanlm.runtime.moe.trace import RoutingRecorder, RoutingTrace, load_routing_trace

__all__ = [
    "MOE_ADAPTERS",
    "NULL_EXPERT",
    "AdapterRegistry",
    "ExpertFlopsCounter",
    "ExpertFlopsReport",
    "ExpertGroups",
    "LayerFlops",
    "MoeBlockAdapter",
    "MoeLayer",
    "MoeLayerSpec",
    "Routing",
    "RoutingObserver",
    "RoutingPolicy",
    "RoutingRecorder",
    "RoutingTrace",
    "expert_flops_ratio",
    "find_moe_layers",
    "group_by_expert",
    "load_routing_trace",
    "moe_block_forward",
    "moe_runtime",
    "routed_expert_flops",
    "router_flops",
    "run_routed_experts",
    "shared_expert_flops",
    "softmax_top_k",
    "stock_policy",
    "top_k_softmax",
]
