"""Datasets (shapes, fashion-mnist, digits, folder) and the views the methods train on."""

from trainer.data.datasets import MEAN, STD, DataError, ImageDataset, build_dataset, normalize, to_uint8_image
from trainer.data.loader import build_loader, epoch_of, eval_tensor
from trainer.data.multicrop import build_view_transform
from trainer.data.views import Batch, ViewSpec

__all__ = ["MEAN", "STD", "Batch", "DataError", "ImageDataset", "ViewSpec", "build_dataset", "build_loader",
           "build_view_transform", "epoch_of", "eval_tensor", "normalize", "to_uint8_image"]
