"""What the optimizer's passes share, apart from the passes themselves (one file per pass in
ortgpu/optimizer/): pattern matching and rewriting (matching.py), edits that take nodes out of
the data flow (graph_edit.py), Reshape targets and shape values (shape_patterns.py,
shape_values.py), activations a fusion may absorb (activation_patterns.py), the Conv foldings'
common part (conv_folding.py) and value types inferred again between rounds (type_refresh.py).
What the passes ask of a graph is :mod:`ortgpu.graph_query`'s."""
