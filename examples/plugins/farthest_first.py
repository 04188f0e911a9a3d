"""An example strategy plugin: query the candidates whose embedding lies farthest from the mean
embedding of the labelled set (a crude diversity heuristic; ~20 lines is all a strategy takes).

    plugins: [examples/plugins/farthest_first.py]     # in the sweep file
    grid: {strategy: [farthest_first], ...}
"""

from al_core.strategies import STRATEGIES, Strategy, top_k


class FarthestFromLabelled(Strategy):
    name = "farthest_first"
    needs = frozenset({"embeddings", "labelled_embeddings"})  # computed on the device, only for this

    def select(self, ctx, k):
        centre = ctx.labelled_embeddings.mean(0) if len(ctx.labelled) else ctx.embeddings.mean(0)
        scores = (ctx.embeddings - centre).norm(dim=1).cpu().numpy()
        return top_k(scores, ctx.candidates, k)  # ties to the lower pool index, like every strategy


STRATEGIES.register("farthest_first")(FarthestFromLabelled())
