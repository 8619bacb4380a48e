"""Which execution provider runs which node, in onnxruntime's information types
(OrtEpAssignedSubgraph, OrtEpAssignedNode), for InferenceSession.get_provider_graph_assignment_info."""
from __future__ import annotations


class OrtEpAssignedNode:
    """A node of the session's graph: domain, op_type, name."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("OrtEpAssignedNode: No constructor defined! "
                        "(InferenceSession.get_provider_graph_assignment_info() lists them)")

    @classmethod
    def _make(cls, domain: str, op_type: str, name: str) -> "OrtEpAssignedNode":
        obj = cls.__new__(cls)
        obj.domain, obj.op_type, obj.name = domain, op_type, name
        return obj

    def __repr__(self):
        return f"OrtEpAssignedNode({self.domain}:{self.op_type}/{self.name})"


class OrtEpAssignedSubgraph:
    """Nodes one provider runs together.  ortgpu runs every node as its own kernel call, so each
    subgraph holds one node (as onnxruntime reports for its CPU provider)."""

    def __init__(self, *_args, **_kwargs):
        raise TypeError("OrtEpAssignedSubgraph: No constructor defined! "
                        "(InferenceSession.get_provider_graph_assignment_info() lists them)")

    @classmethod
    def _make(cls, ep_name: str, nodes: list[OrtEpAssignedNode]) -> "OrtEpAssignedSubgraph":
        obj = cls.__new__(cls)
        obj.ep_name, obj._nodes = ep_name, list(nodes)
        return obj

    def get_nodes(self) -> list[OrtEpAssignedNode]:
        return list(self._nodes)

    def __repr__(self):
        return f"OrtEpAssignedSubgraph({self.ep_name}, {self._nodes!r})"
