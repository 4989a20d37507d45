"""Expert FLOPs of MoE layers, counted from the routing that actually ran.

A matrix product of an [M, A] input with an [A, B] weight costs 2 x M x A x B FLOPs (one multiply and one add
per multiply-add). Per token, with H the model dim, E the number of experts and I an expert's inner dim:
- each (token, real expert) slot runs a SwiGLU expert: gate, up and down projections, 2 x 3 x H x I;
- the router: 2 x H x E;
- a shared SwiGLU expert of inner dim Is, where the block has one: 2 x 3 x H x Is, plus 2 x H for its sigmoid
  gate Linear(H, 1).
Null slots cost nothing. Activations, gating products, weight scaling and the scatter-add are not counted,
because they are O(I) or O(H) per slot against O(H x I) for the projections. Padding positions are routed and
run like any token, so they are counted.

Shapes: N tokens, K slots per token.
"""

from dataclasses import asdict, dataclass, field

from leanlm.errors import InvalidArgumentError
from leanlm.runtime.moe.routing import NULL_EXPERT, MoeLayerSpec, Routing


def routed_expert_flops(layer: MoeLayerSpec) -> int:
    """FLOPs of one routed SwiGLU expert on one token."""
    return 2 * 3 * layer.hidden_size * layer.expert_intermediate_size


def router_flops(layer: MoeLayerSpec) -> int:
    """FLOPs of the router's logits for one token."""
    return 2 * layer.hidden_size * layer.num_experts


def shared_expert_flops(layer: MoeLayerSpec) -> int:
    """FLOPs of the shared SwiGLU expert and its gate for one token (0 when the block has none)."""
    expert = 2 * 3 * layer.hidden_size * layer.shared_intermediate_size
    gate = 2 * layer.hidden_size if layer.has_shared_gate else 0
    return expert + gate


@dataclass
class LayerFlops:
    """Counts of one MoE layer over every forward pass seen."""

    tokens: int = 0
    real_slots: int = 0  # (token, real expert) pairs that ran
    routed_flops: int = 0
    router_flops: int = 0
    shared_flops: int = 0


@dataclass(frozen=True)
class ExpertFlopsReport:
    """Totals over all MoE layers and forward passes."""

    tokens: int  # token positions that went through the model (the largest count of any MoE layer)
    layer_tokens: int  # (token, MoE layer) pairs
    real_expert_slots: int  # (token, MoE layer, real expert) triples that ran
    routed_flops: int
    router_flops: int
    shared_flops: int
    layers: dict[int, LayerFlops] = field(default_factory=dict)  # layer index -> its counts

    @property
    def total_flops(self) -> int:
        return self.routed_flops + self.router_flops + self.shared_flops

    @property
    def avg_real_experts(self) -> float:
        """Mean number of real experts a token ran in one MoE layer."""
        return self.real_expert_slots / self.layer_tokens if self.layer_tokens else 0.0

    @property
    def routed_flops_per_token(self) -> float:
        return self.routed_flops / self.tokens if self.tokens else 0.0

    @property
    def total_flops_per_token(self) -> float:
        return self.total_flops / self.tokens if self.tokens else 0.0

    def to_dict(self) -> dict:
        """Return the counts and the derived figures as plain JSON-ready values."""
        return asdict(self) | {
            "total_flops": self.total_flops,
            "avg_real_experts": self.avg_real_experts,
            "routed_flops_per_token": self.routed_flops_per_token,
            "total_flops_per_token": self.total_flops_per_token,
        }


class ExpertFlopsCounter:
    """Routing observer that counts expert FLOPs, for `moe_runtime(recorder=...)`."""

    def __init__(self) -> None:
        self.layers: dict[int, LayerFlops] = {}

    def record(self, layer: MoeLayerSpec, routing: Routing) -> None:
        num_tokens = routing.experts.shape[0]
        real_slots = int((routing.experts != NULL_EXPERT).sum())

        counts = self.layers.setdefault(layer.index, LayerFlops())
        counts.tokens += num_tokens
        counts.real_slots += real_slots
        counts.routed_flops += real_slots * routed_expert_flops(layer)
        counts.router_flops += num_tokens * router_flops(layer)
        counts.shared_flops += num_tokens * shared_expert_flops(layer)

    def report(self) -> ExpertFlopsReport:
        layers = {index: LayerFlops(**asdict(counts)) for index, counts in sorted(self.layers.items())}
        return ExpertFlopsReport(
            tokens=max((counts.tokens for counts in layers.values()), default=0),
            layer_tokens=sum(counts.tokens for counts in layers.values()),
            real_expert_slots=sum(counts.real_slots for counts in layers.values()),
            routed_flops=sum(counts.routed_flops for counts in layers.values()),
            router_flops=sum(counts.router_flops for counts in layers.values()),
            shared_flops=sum(counts.shared_flops for counts in layers.values()),
            layers=layers,
        )


def expert_flops_ratio(run: ExpertFlopsReport, baseline: ExpertFlopsReport) -> float:
    """Return the routed-expert FLOPs per token of `run` divided by those of `baseline`.

    Router and shared-expert FLOPs are left out because they are the same per token whatever the routing.
    """
    if baseline.routed_flops_per_token == 0:
        raise InvalidArgumentError(
            "the baseline ran no routed expert, so an expert-FLOPs ratio is undefined; count a baseline run first"
        )
    return run.routed_flops_per_token / baseline.routed_flops_per_token
