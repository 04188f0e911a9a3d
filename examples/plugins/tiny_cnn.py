"""An example model plugin: a four-stage CNN, a tenth of a ResNet18's cost at the same width.

The constructor takes num_classes, in_channels and width (and, optionally, dropout); forward
returns (logits, [four stage features]) like the built-in models, so learning_loss, coreset,
badge and bald all work with it.
"""

import torch.nn as nn
import torch.nn.functional as F

from al_core.models import MODELS


class TinyCNN(nn.Module):
    dropout_only_before_classifier = True  # MC-dropout passes may share one backbone pass

    def __init__(self, num_classes=10, in_channels=3, width=16, dropout=0.0):
        super().__init__()
        chans = [in_channels] + [c * width for c in (1, 2, 4, 8)]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 1 if i == 0 else 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for i, (a, b) in enumerate(zip(chans, chans[1:]))
        )
        self.stage_channels = chans[1:]  # read by the loss-prediction module
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(chans[-1], num_classes)

    def forward(self, x):
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        emb = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.linear(self.dropout(emb) if self.dropout.p > 0 else emb), feats


@MODELS.register("tiny_cnn")
def tiny_cnn(num_classes=10, in_channels=3, width=16, dropout=0.0):
    return TinyCNN(num_classes, in_channels, width, dropout)
