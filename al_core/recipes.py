"""Named optimizer recipes: `optim.recipe: group | published` in a sweep file.

A recipe gives every optimizer a full set of hyper-parameters; explicit `optim.<name>` values in
the sweep file override the recipe's, key by key. Without `optim.recipe` the optimizers' own
defaults (al_core/optim.py) apply, as before recipes existed. The resolved values are what a run
uses and what its run.json records (`config.optim`), next to `config.recipe`.

Sources of the `published` values (checked against the papers; where a value is a convention
rather than a number a paper reports, the comment says so):

- He, Zhang, Ren, Sun, "Deep Residual Learning for Image Recognition", CVPR 2016, sec. 4.2
  (CIFAR-10): SGD, lr 0.1, momentum 0.9, batch 128, lr / 10 twice; their weight decay is 1e-4.
- Zagoruyko & Komodakis, "Wide Residual Networks", BMVC 2016: SGD with Nesterov momentum 0.9 and
  weight decay 5e-4 on CIFAR; Yoo & Kweon, "Learning Loss for Active Learning", CVPR 2019: SGD
  lr 0.1, momentum 0.9, weight decay 5e-4 for CIFAR-10 ResNet-18 in the active-learning loop.
- Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015: lr (alpha) 1e-3, betas
  (0.9, 0.999), eps 1e-8, the paper's suggested defaults.
- Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019: AdamW (decay applied
  to the weights, not added to the gradient); they show the best decay depends on the number of
  steps, so no single value transfers. 5e-2 is the decoupled decay of the widely used AdamW image
  recipes (Touvron et al., DeiT, ICML 2021; Liu et al., ConvNeXt, CVPR 2022); PyTorch's default is
  1e-2. Tuning (`tune:`) should cover both.
- Tieleman & Hinton, COURSERA Neural Networks for Machine Learning, lecture 6.5 (2012): RMSprop
  with a moving average of squared gradients, decay 0.9, and lr 1e-3 as the suggested start.
"""

from __future__ import annotations

RECIPES: dict[str, dict[str, dict]] = {
    # The values the group used (jobs/cifar10.yaml before recipes): a CIFAR ResNet SGD recipe, and
    # the Adam family at lr 1e-4 with no or (for AdamW at that lr) negligible regularisation.
    "group": {
        "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4},
        "adam": {"lr": 1e-4, "weight_decay": 0.0},
        "adamw": {"lr": 1e-4, "weight_decay": 5e-4},
        "rmsprop": {"lr": 1e-4, "alpha": 0.99, "weight_decay": 0.0},
    },
    "published": {
        # lr 0.1, momentum 0.9: He et al. 2016 (CIFAR-10). weight decay 5e-4: Zagoruyko & Komodakis
        # 2016 and Yoo & Kweon 2019 (He et al. used 1e-4).
        "sgd": {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "nesterov": False},
        # lr 1e-3, betas, eps: Kingma & Ba 2015. L2 5e-4 (coupled, added to the gradient): the SGD
        # recipe's coefficient carried over, a common convention in CIFAR code, not a value a paper
        # reports as tuned for Adam (Loshchilov & Hutter 2019 show coupled L2 is weak under Adam).
        "adam": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 5e-4},
        # lr 1e-3: Kingma & Ba 2015. Decoupled decay 5e-2: DeiT (2021) / ConvNeXt (2022) AdamW
        # recipes; AdamW itself: Loshchilov & Hutter 2019.
        "adamw": {"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 5e-2},
        # lr 1e-3, decay (alpha) 0.9: Tieleman & Hinton 2012. L2 5e-4: the same convention as Adam
        # above (no paper source). Note: lr 1e-3 is the lecture's start value, at the upper end of
        # what trains BatchNorm ResNets reliably here; tuning grids should include 1e-4..3e-4.
        "rmsprop": {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8, "momentum": 0.0, "weight_decay": 5e-4},
    },
}


def names() -> list[str]:
    return list(RECIPES)


def recipe_params(recipe: str | None, optimizer: str) -> dict:
    """The recipe's hyper-parameters for `optimizer` ({} without a recipe or for an optimizer the
    recipe does not name, e.g. one a plugin registers: its own defaults apply)."""
    if recipe is None:
        return {}
    return dict(RECIPES[recipe].get(optimizer, {}))
