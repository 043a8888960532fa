"""Layers shared by the learned entropy models (``models`` and ``scar`` both build on them;
kept apart so neither imports the other)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import HyperLatentCodec


def conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2)


def deconv(cin: int, cout: int, k: int = 3, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=k // 2, output_padding=stride - 1)


def _hyper(M: int, Nh: int, out: int) -> HyperLatentCodec:
    h_a = nn.Sequential(conv(M, Nh, 3), nn.LeakyReLU(inplace=True), conv(Nh, Nh, 3, stride=2))
    h_s = nn.Sequential(deconv(Nh, Nh, 3, 2), nn.LeakyReLU(inplace=True), conv(Nh, out, 3))
    return HyperLatentCodec(entropy_bottleneck=EntropyBottleneck(Nh), h_a=h_a, h_s=h_s, quantizer="ste")


class LatentResidualPrediction(nn.Module):
    """LRP per channel group: a bounded correction of the quantised latent, predicted from
    the hyper params and the groups decoded so far (both known to the decoder)."""

    def __init__(self, side_channels: int, groups: list[int], hidden: int = 48):
        super().__init__()
        self.groups = list(groups)
        acc = 0
        self.nets = nn.ModuleList()
        for g in self.groups:
            acc += g
            self.nets.append(nn.Sequential(conv(side_channels + acc, hidden, 1), nn.LeakyReLU(inplace=True),
                                           conv(hidden, g, 3)))

    def forward(self, y_hat: Tensor, side_params: Tensor) -> Tensor:
        out, acc = [], 0
        for g, net in zip(self.groups, self.nets):
            acc += g
            r = 0.5 * torch.tanh(net(torch.cat([side_params, y_hat[:, :acc]], dim=1)))
            out.append(y_hat[:, acc - g:acc] + r)
        return torch.cat(out, dim=1)
