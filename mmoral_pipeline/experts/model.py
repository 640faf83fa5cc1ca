"""Build the torchvision detector a `DetectorSpec` describes (no downloaded weights, ever)."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
from torch import nn
from torchvision.models.detection import FCOS, FasterRCNN, fasterrcnn_mobilenet_v3_large_fpn
from torchvision.models.detection._utils import BoxLinearCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSClassificationHead, FCOSHead, FCOSRegressionHead
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from mmoral_pipeline.experts.spec import DetectorSpec

# Normalisation of the three input channels (grey, x, y): all in 0..1.
IMAGE_MEAN = [0.45, 0.5, 0.5]
IMAGE_STD = [0.25, 0.29, 0.29]


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def tiny_backbone(width: int) -> tuple[nn.Module, list[int]]:
    """Five stride-2 stages (strides 2..32); stages 3-5 (strides 8, 16, 32) feed the FPN.

    The early, high-resolution stages are one convolution each: on CPU they cost the most.
    """
    c = [width, width * 2, width * 4, width * 6, width * 8]
    body = nn.Sequential(
        OrderedDict(
            s1=_conv(3, c[0], 2),
            s2=_conv(c[0], c[1], 2),
            s3=nn.Sequential(_conv(c[1], c[2], 2), _conv(c[2], c[2])),
            s4=nn.Sequential(_conv(c[2], c[3], 2), _conv(c[3], c[3])),
            s5=nn.Sequential(_conv(c[3], c[4], 2), _conv(c[4], c[4])),
        )
    )
    return body, c[2:]


def build_detector(spec: DetectorSpec) -> nn.Module:
    """The network, randomly initialised; load a state dict into it to use a checkpoint.

    Weights are channels-last: on CPU its small convolutions run ~1.5-2x faster that way (training and inference).
    """
    return _build(spec).to(memory_format=torch.channels_last)


def _build(spec: DetectorSpec) -> nn.Module:
    common = {
        "min_size": spec.image_size,  # the expert resizes beforehand: the transform keeps the size as it is
        "max_size": spec.image_size,
        "image_mean": IMAGE_MEAN,
        "image_std": IMAGE_STD,
        "detections_per_img": spec.detections_per_image,
    }
    if spec.arch == "fasterrcnn_mobilenet_v3":
        return fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, num_classes=spec.num_classes, trainable_backbone_layers=6,
            box_score_thresh=spec.score_floor, **common,
        )
    body, in_channels = tiny_backbone(spec.width)
    if spec.arch == "fasterrcnn_tiny":
        backbone = BackboneWithFPN(
            body, {"s3": "0", "s4": "1", "s5": "2"}, in_channels, spec.fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        # Strides 8..64; tall thin teeth and root canals as well as wide jaw structures.
        anchors = AnchorGenerator(((12,), (24,), (48,), (96,)), ((0.5, 1.0, 2.0, 4.0),) * 4)
        representation = 256  # torchvision's default head (1024 wide, 12M weights) is far too big here
        return FasterRCNN(
            backbone,
            rpn_anchor_generator=anchors,
            box_head=TwoMLPHead(spec.fpn_channels * 7 * 7, representation),
            box_predictor=FastRCNNPredictor(representation, spec.num_classes),
            rpn_pre_nms_top_n_train=1000,
            rpn_post_nms_top_n_train=500,
            rpn_pre_nms_top_n_test=600,
            rpn_post_nms_top_n_test=300,
            box_batch_size_per_image=128,
            box_score_thresh=spec.score_floor,
            **common,
        )
    backbone = BackboneWithFPN(
        body, {"s3": "0", "s4": "1", "s5": "2"}, in_channels, spec.fpn_channels,
        extra_blocks=LastLevelP6P7(spec.fpn_channels, spec.fpn_channels),
    )
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    return FCOS(
        backbone,
        num_classes=spec.num_classes,
        anchor_generator=anchors,
        head=_SmallFCOSHead(spec),
        score_thresh=spec.score_floor,
        **common,
    )


class _SmallFCOSHead(FCOSHead):
    """torchvision's FCOS head with two convolutions per branch and GroupNorm(8) (its default, GroupNorm(32)
    with four convolutions, is sized for 256 channels)."""

    def __init__(self, spec: DetectorSpec, num_convs: int = 2) -> None:
        nn.Module.__init__(self)
        norm = partial(nn.GroupNorm, 8)
        self.box_coder = BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(
            spec.fpn_channels, 1, spec.num_classes, num_convs, norm_layer=norm
        )
        self.regression_head = FCOSRegressionHead(spec.fpn_channels, 1, num_convs, norm_layer=norm)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
