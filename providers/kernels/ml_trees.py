"""Tree ensembles of the ai.onnx.ml domain: TreeEnsemble (opset 5) and the older TreeEnsembleRegressor.

Both encodings are turned into one flat forest: interior nodes with a comparison, and leaves with a
dense [leaf, target] weight table.  All (sample, tree) pairs walk down together, one level per step.
"""
import numpy as np

from ortgpu.providers.kernels.ml import ML, post_transform_scores
from ortgpu.providers.dtype_sets import FLOAT, INDEX
from ortgpu.providers.registry import kernel

_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4,
          "BRANCH_NEQ": 5, "BRANCH_MEMBER": 6}
_AGGREGATES = {"AVERAGE": 0, "SUM": 1, "MIN": 2, "MAX": 3}


class _Forest:
    """Interior nodes (arrays indexed by node), the root of each tree, and the leaves' target weights.

    A child reference is (index, is_leaf); a root may itself be a leaf.  `weights[leaf, target]` holds
    the leaf's combined vote (sum, min or max of its entries, by `aggregate`) and `voted` where it has one.
    """

    def __init__(self, feature, mode, split, nan_true, true_id, true_leaf, false_id, false_leaf,
                 roots, root_leaf, members, leaf_entries, n_leaves, n_targets, aggregate):
        self.feature = np.asarray(feature, dtype=np.int64)
        self.mode = np.asarray(mode, dtype=np.int64)
        self.split = np.asarray(split, dtype=np.float64)
        self.nan_true = np.asarray(nan_true, dtype=bool) if len(nan_true) else np.zeros(len(mode), bool)
        self.true_id = np.asarray(true_id, dtype=np.int64)
        self.true_leaf = np.asarray(true_leaf, dtype=bool)
        self.false_id = np.asarray(false_id, dtype=np.int64)
        self.false_leaf = np.asarray(false_leaf, dtype=bool)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.root_leaf = np.asarray(root_leaf, dtype=bool)
        # Set-membership nodes: row member_row[node] of a NaN-padded table of their sets.
        self.member_row = np.full(len(mode), -1, dtype=np.int64)
        width = max((len(s) for s in members.values()), default=0)
        self.member_table = np.full((len(members), max(width, 1)), np.nan)
        for r, (node, values) in enumerate(members.items()):
            self.member_row[node] = r
            self.member_table[r, :len(values)] = values
        leaf, target, weight = (np.asarray(a) for a in leaf_entries)
        if len(target) and (target.min() < 0 or target.max() >= n_targets):
            raise ValueError(f"tree leaf target ids must be in [0, {n_targets})")
        self.aggregate = aggregate
        self.n_targets = n_targets
        fill = {2: np.inf, 3: -np.inf}.get(aggregate, 0.0)
        self.weights = np.full((n_leaves, n_targets), fill)
        self.voted = np.zeros((n_leaves, n_targets), dtype=bool)
        if aggregate == 2:
            np.minimum.at(self.weights, (leaf, target), weight)
        elif aggregate == 3:
            np.maximum.at(self.weights, (leaf, target), weight)
        else:
            np.add.at(self.weights, (leaf, target), weight)
        self.voted[leaf, target] = True

    def leaves(self, X):
        """The leaf each (sample, tree) pair reaches: int64 [N, n_trees]."""
        n, t = X.shape[0], len(self.roots)
        leaf = np.where(self.root_leaf, self.roots, -1)[None, :].repeat(n, axis=0).reshape(-1)
        cur = np.broadcast_to(self.roots, (n, t)).reshape(-1).copy()
        row = np.repeat(np.arange(n), t)
        active = np.flatnonzero(~np.broadcast_to(self.root_leaf, (n, t)).reshape(-1))
        for _ in range(len(self.mode) + 1):
            if active.size == 0:
                break
            node = cur[active]
            x = X[row[active], self.feature[node]]
            cond = self._test(x, node)
            nxt = np.where(cond, self.true_id[node], self.false_id[node])
            done = np.where(cond, self.true_leaf[node], self.false_leaf[node])
            leaf[active[done]] = nxt[done]
            cur[active[~done]] = nxt[~done]
            active = active[~done]
        if active.size:
            raise ValueError("a tree of the ensemble has a cycle")
        return leaf.reshape(n, t)

    def _test(self, x, node):
        mode, split = self.mode[node], self.split[node]
        with np.errstate(invalid="ignore"):
            cond = np.select([mode == 0, mode == 1, mode == 2, mode == 3, mode == 4, mode == 5],
                             [x <= split, x < split, x >= split, x > split, x == split, x != split],
                             default=False)
        member = mode == 6
        if member.any():
            sets = self.member_table[self.member_row[node[member]]]
            cond[member] = (sets == x[member, None]).any(axis=1)
        return cond | (np.isnan(x) & self.nan_true[node])

    def scores(self, X):
        """Aggregated votes per target (float64 [N, n_targets]); targets without a vote are 0."""
        leaf = self.leaves(X)
        n = X.shape[0]
        if self.aggregate in (2, 3):
            reduce = np.minimum if self.aggregate == 2 else np.maximum
            out = np.full((n, self.n_targets), np.inf if self.aggregate == 2 else -np.inf)
            voted = np.zeros((n, self.n_targets), dtype=bool)
            for t in range(leaf.shape[1]):
                out = reduce(out, self.weights[leaf[:, t]])
                voted |= self.voted[leaf[:, t]]
            return np.where(voted, out, 0.0)
        out = np.zeros((n, self.n_targets))
        for t in range(leaf.shape[1]):
            out += self.weights[leaf[:, t]]
        if self.aggregate == 0 and leaf.shape[1]:
            out /= leaf.shape[1]
        return out


def _flat(t):
    return [] if t is None else np.asarray(t).reshape(-1).tolist()


@kernel("TreeEnsemble", since=5, domain=ML, provider="cpu", types={"T": FLOAT})
def TreeEnsemble(ctx, X, *, aggregate_function=1, leaf_targetids, leaf_weights, n_targets,
                 nodes_falseleafs, nodes_falsenodeids, nodes_featureids, nodes_modes, nodes_splits,
                 nodes_trueleafs, nodes_truenodeids, tree_roots, membership_values=None,
                 nodes_hitrates=None, nodes_missing_value_tracks_true=(), post_transform=0):
    """Sum (or average/min/max) the leaf weights each tree reaches per target; output in X's type."""
    modes = _flat(nodes_modes)
    members, pending = {}, _flat(membership_values)
    for node, m in enumerate(modes):
        if m == 6:  # the sets are listed in node order, each closed by a NaN
            cut = next((i for i, v in enumerate(pending) if np.isnan(v)), len(pending))
            members[node], pending = pending[:cut], pending[cut + 1:]
    weights = _flat(leaf_weights)
    forest = _Forest(nodes_featureids, modes, _flat(nodes_splits), nodes_missing_value_tracks_true or (),
                     nodes_truenodeids, nodes_trueleafs, nodes_falsenodeids, nodes_falseleafs,
                     tree_roots, [False] * len(tree_roots), members,
                     (np.arange(len(weights)), leaf_targetids, weights), len(weights), n_targets,
                     aggregate_function)
    x = X.astype(np.float64).reshape(X.shape[0], -1) if X.ndim else X.reshape(1, 1)
    return post_transform_scores(np, forest.scores(x), post_transform).astype(X.dtype)


def _old_forest(nodes_treeids, nodes_nodeids, nodes_modes, nodes_featureids, nodes_values,
                nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true,
                vote_treeids, vote_nodeids, vote_ids, vote_weights, n_targets, aggregate):
    """A _Forest from the (tree id, node id) encoding where leaves are nodes with mode LEAF."""
    where = {(t, i): k for k, (t, i) in enumerate(zip(nodes_treeids, nodes_nodeids))}
    leaf_of, inner_of = {}, {}
    for k, m in enumerate(nodes_modes):
        (leaf_of if m == "LEAF" else inner_of)[k] = len(leaf_of if m == "LEAF" else inner_of)
    inner = list(inner_of)

    def child(k, ids):
        c = where[(nodes_treeids[k], ids[k])]
        return (leaf_of[c], True) if c in leaf_of else (inner_of[c], False)

    trues = [child(k, nodes_truenodeids) for k in inner]
    falses = [child(k, nodes_falsenodeids) for k in inner]
    roots, root_leaf, seen = [], [], set()
    for k, t in enumerate(nodes_treeids):  # the first node listed for a tree is its root
        if t not in seen:
            seen.add(t)
            roots.append(leaf_of.get(k, inner_of.get(k)))
            root_leaf.append(k in leaf_of)
    tracks = list(nodes_missing_value_tracks_true or ())
    for m in nodes_modes:
        if m not in _MODES and m != "LEAF":
            raise ValueError(f"unknown tree node mode {m!r}")
    vote_leaf = [leaf_of[where[(t, i)]] for t, i in zip(vote_treeids, vote_nodeids)]
    return _Forest([nodes_featureids[k] for k in inner], [_MODES[nodes_modes[k]] for k in inner],
                   [nodes_values[k] for k in inner], [tracks[k] for k in inner] if tracks else [],
                   [c for c, _ in trues], [lf for _, lf in trues],
                   [c for c, _ in falses], [lf for _, lf in falses], roots, root_leaf, {},
                   (vote_leaf, list(vote_ids), list(vote_weights)), len(leaf_of), n_targets, aggregate)


@kernel("TreeEnsembleRegressor", since=(1, 3, 5), domain=ML, provider="cpu",
        types={"T": INDEX | frozenset({"float32", "float64"})})
def TreeEnsembleRegressor(ctx, X, *, aggregate_function="SUM", base_values=None, base_values_as_tensor=None,
                          n_targets=1, nodes_falsenodeids=(), nodes_featureids=(), nodes_hitrates=None,
                          nodes_hitrates_as_tensor=None, nodes_missing_value_tracks_true=(),
                          nodes_modes=(), nodes_nodeids=(), nodes_treeids=(), nodes_truenodeids=(),
                          nodes_values=None, nodes_values_as_tensor=None, post_transform="NONE",
                          target_ids=(), target_nodeids=(), target_treeids=(), target_weights=None,
                          target_weights_as_tensor=None):
    """The deprecated regressor encoding: votes per (tree, leaf node), plus base_values; float32 output."""
    values = _flat(nodes_values_as_tensor) if nodes_values_as_tensor is not None else list(nodes_values or ())
    weights = (_flat(target_weights_as_tensor) if target_weights_as_tensor is not None
               else list(target_weights or ()))
    base = _flat(base_values_as_tensor) if base_values_as_tensor is not None else list(base_values or ())
    if aggregate_function not in _AGGREGATES:
        raise ValueError(f"unknown aggregate_function {aggregate_function!r}")
    forest = _old_forest(nodes_treeids, nodes_nodeids, nodes_modes, nodes_featureids, values,
                         nodes_truenodeids, nodes_falsenodeids, nodes_missing_value_tracks_true,
                         target_treeids, target_nodeids, target_ids, weights, n_targets,
                         _AGGREGATES[aggregate_function])
    s = forest.scores(X.astype(np.float64).reshape(X.shape[0], -1) if X.ndim else X.reshape(1, 1))
    if base:
        s = s + np.asarray(base, dtype=np.float64)
    return post_transform_scores(np, s, post_transform).astype(np.float32)
